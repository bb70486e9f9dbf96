mod common;

use std::os::unix::fs::MetadataExt;

use berth_snapshotter::SnapshotterKind;
use berth_testkit::{
    Compression, Format, ImageBuilder, LayerBuilder, Pusher, Registry, busybox_base_layers,
};
use common::{Env, r};

async fn shared_layers(kind: SnapshotterKind) {
    let reg = Registry::start().unwrap();
    let base = busybox_base_layers();
    let a = ImageBuilder::new(Format::Oci)
        .layers(base.clone())
        .layer(
            LayerBuilder::new()
                .file("app-a", vec![1u8; 300_000])
                .build(Compression::Gzip)
                .unwrap(),
        )
        .build()
        .unwrap();
    let b = ImageBuilder::new(Format::Docker)
        .layers(base.clone())
        .layer(
            LayerBuilder::new()
                .file("app-b", vec![2u8; 100_000])
                .build(Compression::Zstd)
                .unwrap(),
        )
        .build()
        .unwrap();
    let p = Pusher::new(&reg);
    p.push_image("a", "v1", &a).unwrap();
    p.push_image("b", "v1", &b).unwrap();
    let env = Env::new(kind).await;
    let before = env.store.fs_usage().unwrap();
    let ia = env
        .store
        .pull(&r(&format!("{}/a:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    let after_a = env.store.fs_usage().unwrap();
    let ib = env
        .store
        .pull(&r(&format!("{}/b:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    let after_b = env.store.fs_usage().unwrap();
    assert!(after_a.images.bytes > before.images.bytes + 300_000);
    assert!(after_b.images.bytes > after_a.images.bytes);

    // Base layers stored once: 2 shared + 1 each.
    let chains = |i: &berth_snapshotter::Image| {
        i.layers
            .iter()
            .map(|l| l.chain_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(chains(&ia)[..2], chains(&ib)[..2]);
    assert_eq!(env.snapshot_dirs().len(), 4, "{:?}", env.snapshot_dirs());
    // Blobs: 2 shared layers + 2 own layers + 2 configs + 2 manifests.
    assert_eq!(env.blobs().len(), 8, "{:?}", env.blobs());
    let busybox = env.layer_fs(&ia.layers[0].chain_id).join("bin/busybox");
    let ino = std::fs::metadata(&busybox).unwrap().ino();

    // Two names of one image: removing one only untags.
    p.push_image("a", "v2", &a).unwrap();
    env.store
        .pull(&r(&format!("{}/a:v2", reg.host())), None, |_| {})
        .await
        .unwrap();
    env.store
        .remove(&format!("{}/a:v2", reg.host()))
        .await
        .unwrap();
    assert_eq!(
        env.store.get(&format!("{}/a:v1", reg.host())).unwrap().id,
        ia.id
    );
    assert!(env.store.get(&format!("{}/a:v2", reg.host())).is_err());

    env.store
        .remove(&format!("{}/a:v1", reg.host()))
        .await
        .unwrap();
    assert!(env.store.get(&ia.id).is_err());
    assert_eq!(env.snapshot_dirs().len(), 3);
    assert!(!env.layer_fs(&ia.layers[2].chain_id).exists());
    assert_eq!(
        std::fs::metadata(&busybox).unwrap().ino(),
        ino,
        "shared base layer must stay untouched"
    );
    assert_eq!(env.blobs().len(), 5, "{:?}", env.blobs());
    let after_rm = env.store.fs_usage().unwrap();
    assert!(after_rm.images.bytes < after_b.images.bytes - 300_000);

    env.store.remove(&ib.id).await.unwrap();
    assert!(env.store.list().unwrap().is_empty());
    assert!(env.snapshot_dirs().is_empty());
    assert!(env.blobs().is_empty());
    assert_eq!(
        env.store.fs_usage().unwrap().images.bytes,
        before.images.bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_layers_stored_once_overlay() {
    shared_layers(SnapshotterKind::Overlayfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_layers_stored_once_native() {
    shared_layers(SnapshotterKind::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_image_from_two_registries_is_one_image() {
    let (r1, r2) = (Registry::start().unwrap(), Registry::start().unwrap());
    let img = berth_testkit::busybox();
    Pusher::new(&r1).push_image("x/bb", "v1", &img).unwrap();
    Pusher::new(&r2).push_image("y/bb", "v2", &img).unwrap();
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    env.store
        .pull(&r(&format!("{}/x/bb:v1", r1.host())), None, |_| {})
        .await
        .unwrap();
    let got = env
        .store
        .pull(&r(&format!("{}/y/bb:v2", r2.host())), None, |_| {})
        .await
        .unwrap();
    assert_eq!(env.store.list().unwrap().len(), 1);
    assert_eq!(got.repo_tags.len(), 2);
    assert_eq!(got.repo_digests.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpack_keeps_metadata() {
    let reg = Registry::start().unwrap();
    let layer = LayerBuilder::new()
        .mtime(1_600_000_000)
        .dir("d")
        .owner(1000, 1001)
        .file_mode("d/suid", "x", 0o4755)
        .owner(1000, 1000)
        .file("d/xattr", "x")
        .xattr("user.berth", "yes")
        .hardlink("d/hard", "d/suid")
        .symlink("d/sym", "suid")
        .char_device("d/null", 1, 3)
        .fifo("d/fifo")
        .dir_mode("sticky", 0o1777)
        .build(Compression::None)
        .unwrap();
    let img = ImageBuilder::new(Format::Oci).layer(layer).build().unwrap();
    Pusher::new(&reg).push_image("meta", "v1", &img).unwrap();
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let got = env
        .store
        .pull(&r(&format!("{}/meta:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    let fs = env.layer_fs(&got.layers[0].chain_id);
    let m = std::fs::symlink_metadata(fs.join("d/suid")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777, m.mtime()),
        (1000, 1000, 0o4755, 1_600_000_000)
    );
    assert_eq!(std::fs::metadata(fs.join("d/hard")).unwrap().ino(), m.ino());
    assert_eq!(m.nlink(), 2);
    let d = std::fs::symlink_metadata(fs.join("d")).unwrap();
    assert_eq!((d.uid(), d.gid(), d.mtime()), (1000, 1001, 1_600_000_000));
    assert_eq!(
        std::fs::read_link(fs.join("d/sym")).unwrap().to_str(),
        Some("suid")
    );
    let n = std::fs::symlink_metadata(fs.join("d/null")).unwrap();
    assert_eq!(
        (n.mode() & libc::S_IFMT, n.rdev()),
        (libc::S_IFCHR, libc::makedev(1, 3))
    );
    let f = std::fs::symlink_metadata(fs.join("d/fifo")).unwrap();
    assert_eq!(f.mode() & libc::S_IFMT, libc::S_IFIFO);
    assert_eq!(
        std::fs::metadata(fs.join("sticky")).unwrap().mode() & 0o7777,
        0o1777
    );
    let path = std::ffi::CString::new(fs.join("d/xattr").to_str().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"user.berth".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(&buf[..n.max(0) as usize], b"yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_leftovers_are_collected_at_open() {
    let reg = Registry::start().unwrap();
    let img = berth_testkit::busybox();
    Pusher::new(&reg).push_image("bb", "v1", &img).unwrap();
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let got = env
        .store
        .pull(&r(&format!("{}/bb:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    let root = env.root();
    // What a kill -9 mid-pull leaves: an ingest file, a half-unpacked staging dir and temp snapshot, an
    // unreferenced layer snapshot and blob.
    std::fs::write(root.join("content/ingest/tmp-1-2-3"), "partial").unwrap();
    std::fs::create_dir_all(root.join("snapshots/.new-9-9-9/fs/bin")).unwrap();
    std::fs::create_dir_all(root.join("snapshots/tmp-1-1-1/fs")).unwrap();
    std::fs::write(
        root.join("snapshots/tmp-1-1-1/info.json"),
        r#"{"kind":"active","parent":null}"#,
    )
    .unwrap();
    let orphan = "ab".repeat(32);
    std::fs::create_dir_all(root.join(format!("snapshots/{orphan}/fs"))).unwrap();
    std::fs::write(
        root.join(format!("snapshots/{orphan}/info.json")),
        r#"{"kind":"committed","parent":null}"#,
    )
    .unwrap();
    std::fs::write(
        root.join(format!("content/blobs/sha256/{orphan}")),
        "orphan",
    )
    .unwrap();
    drop(env.store);

    let store = common::open(env.dir.path(), SnapshotterKind::Overlayfs).await;
    assert_eq!(
        std::fs::read_dir(root.join("content/ingest"))
            .unwrap()
            .count(),
        0
    );
    let mut snaps: Vec<String> = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".driver")
        .collect();
    snaps.sort();
    let mut want: Vec<String> = got
        .layers
        .iter()
        .map(|l| l.chain_id[7..].to_string())
        .collect();
    want.sort();
    assert_eq!(snaps, want);
    assert!(!root.join(format!("content/blobs/sha256/{orphan}")).exists());
    assert_eq!(store.get(&got.id).unwrap(), got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_empty_layers() {
    let reg = Registry::start().unwrap();
    let empty = LayerBuilder::new().build(Compression::Gzip).unwrap();
    let file = LayerBuilder::new()
        .file("f", "1")
        .build(Compression::Gzip)
        .unwrap();
    // The same blob three times in one image (tools emit identical empty layers), and a config-only image.
    let img = ImageBuilder::new(Format::Docker)
        .layer(empty.clone())
        .layer(file.clone())
        .layer(empty.clone())
        .layer(empty)
        .build()
        .unwrap();
    let bare = ImageBuilder::new(Format::Oci)
        .cmd(&["true"])
        .build()
        .unwrap();
    let p = Pusher::new(&reg);
    p.push_image("rep", "v1", &img).unwrap();
    p.push_image("bare", "v1", &bare).unwrap();
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let got = env
        .store
        .pull(&r(&format!("{}/rep:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    let chains: std::collections::HashSet<_> =
        got.layers.iter().map(|l| l.chain_id.clone()).collect();
    assert_eq!(
        chains.len(),
        4,
        "same diff at different depths is a different snapshot"
    );
    assert_eq!(env.snapshot_dirs().len(), 4);
    let got = env
        .store
        .pull(&r(&format!("{}/bare:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    assert!(got.layers.is_empty());
    assert!(got.top_snapshot().is_none());
    let mounts = env.store.prepare_container_rootfs("bare", &got).unwrap();
    assert_eq!(mounts[0].kind, "bind");
    env.store.remove_container_rootfs("bare").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_keeps_its_snapshotter() {
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let db = std::sync::Arc::new(redb::Database::create(env.dir.path().join("other.db")).unwrap());
    let err = berth_snapshotter::ImageStore::open(
        &env.root(),
        Default::default(),
        SnapshotterKind::Native,
        db,
    )
    .await
    .err()
    .expect("opening an overlayfs root as native must fail");
    assert!(err.to_string().contains("overlayfs snapshots"), "{err}");
}
