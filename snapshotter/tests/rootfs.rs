//! Container root filesystems from pulled images, mounted in a private mount namespace.

mod common;

use std::path::Path;

use berth_snapshotter::{ImageStore, SnapshotterKind, mount};
use berth_testkit::{
    Compression, FakeAuth, FakeRegistry, Format, ImageBuilder, LayerBuilder, Pusher, Registry,
    busybox_base_layers,
};
use common::{Env, MountGuard, in_mount_ns, r};

fn mount_rootfs(
    store: &ImageStore,
    id: &str,
    image: &berth_snapshotter::Image,
    target: &Path,
) -> MountGuard {
    let mounts = store.prepare_container_rootfs(id, image).unwrap();
    std::fs::create_dir_all(target).unwrap();
    mount(&mounts, target).unwrap();
    MountGuard(target.to_path_buf())
}

async fn writes_stay_in_container(kind: SnapshotterKind) {
    let reg = Registry::start().unwrap();
    let img = ImageBuilder::new(Format::Oci)
        .layers(busybox_base_layers())
        .layer(
            LayerBuilder::new()
                .dir("data")
                .file("data/old", "lower")
                .file("data/gone", "x")
                .dir("opq")
                .file("opq/hidden", "x")
                .build(Compression::Gzip)
                .unwrap(),
        )
        .layer(
            LayerBuilder::new()
                .whiteout("data/gone")
                .opaque("opq")
                .file("opq/new", "y")
                .build(Compression::Gzip)
                .unwrap(),
        )
        .build()
        .unwrap();
    Pusher::new(&reg).push_image("app", "v1", &img).unwrap();
    let env = Env::new(kind).await;
    let image = env
        .store
        .pull(&r(&format!("{}/app:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    let before = env.store.fs_usage().unwrap();
    let target = env.dir.path().join("rootfs");
    let layer_old = env.layer_fs(&image.layers[2].chain_id).join("data/old");
    in_mount_ns(|| {
        let _g = mount_rootfs(&env.store, "c1", &image, &target);
        assert!(target.join("bin/busybox").is_file());
        assert_eq!(
            std::fs::read_to_string(target.join("etc/passwd"))
                .unwrap()
                .lines()
                .count(),
            3
        );
        assert!(
            !target.join("data/gone").exists(),
            "whiteout must hide the file"
        );
        assert!(
            !target.join("opq/hidden").exists(),
            "opaque dir must hide lower content"
        );
        assert!(target.join("opq/new").exists());
        std::fs::write(target.join("data/old"), "changed").unwrap();
        std::fs::write(target.join("new-file"), vec![0u8; 100_000]).unwrap();
        std::fs::remove_file(target.join("bin/ls")).unwrap();
        // A second container of the same image sees none of it.
        let t2 = env.dir.path().join("rootfs2");
        let _g2 = mount_rootfs(&env.store, "c2", &image, &t2);
        assert_eq!(
            std::fs::read_to_string(t2.join("data/old")).unwrap(),
            "lower"
        );
        assert!(!t2.join("new-file").exists());
        assert!(t2.join("bin/ls").exists());
    });
    assert_eq!(std::fs::read_to_string(&layer_old).unwrap(), "lower");
    assert!(
        env.layer_fs(&image.layers[0].chain_id)
            .join("bin/ls")
            .exists()
    );
    let after = env.store.fs_usage().unwrap();
    assert!(
        after.containers.bytes >= before.containers.bytes + 100_000,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.images, before.images);
    // A container keeps its image's layers through GC even when the image is removed.
    env.store.remove(&image.id).await.unwrap();
    assert!(
        env.layer_fs(&image.layers[0].chain_id)
            .join("bin/busybox")
            .exists()
    );
    in_mount_ns(|| {
        let mounts = env.store.container_rootfs_mounts("c1").unwrap();
        let _g = MountGuard(target.clone());
        mount(&mounts, &target).unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("data/old")).unwrap(),
            "changed"
        );
    });
    env.store.remove_container_rootfs("c1").unwrap();
    env.store.remove_container_rootfs("c2").unwrap();
    env.store.remove_container_rootfs("never-existed").unwrap();
    env.store.gc().await.unwrap();
    assert!(env.snapshot_dirs().is_empty(), "{:?}", env.snapshot_dirs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_rootfs_writes_do_not_reach_layers() {
    writes_stay_in_container(SnapshotterKind::Overlayfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_rootfs_writes_do_not_reach_layers() {
    writes_stay_in_container(SnapshotterKind::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_with_128_layers_mounts() {
    // The in-process registry: pushing 128 blobs to docker-registry costs seconds and proves nothing more here.
    let reg = FakeRegistry::start(FakeAuth::default()).unwrap();
    let mut b = ImageBuilder::new(Format::Oci);
    for i in 0..128 {
        b = b.layer(
            LayerBuilder::new()
                .file(&format!("f{i}"), format!("{i}"))
                .file("top", format!("{i}"))
                .build(Compression::Gzip)
                .unwrap(),
        );
    }
    let img = b.build().unwrap();
    reg.add_image("deep", "v1", &img);
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let image = env
        .store
        .pull(&r(&format!("{}/deep:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    assert_eq!(image.layers.len(), 128);
    let target = env.dir.path().join("rootfs");
    in_mount_ns(|| {
        let _g = mount_rootfs(&env.store, "deep", &image, &target);
        assert_eq!(std::fs::read_to_string(target.join("f0")).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(target.join("f127")).unwrap(), "127");
        assert_eq!(std::fs::read_to_string(target.join("top")).unwrap(), "127");
    });
    env.store.remove_container_rootfs("deep").unwrap();
}
