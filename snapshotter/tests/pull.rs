mod common;

use berth_snapshotter::{Auth, Error, SnapshotterKind};
use berth_testkit::{
    Compression, Format, ImageBuilder, IndexBuilder, LayerBuilder, Pusher, Registry, busybox,
    busybox_base_layers,
};
use common::{Env, r};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_and_by_digest() {
    let reg = Registry::start().unwrap();
    let img = busybox();
    let digest = Pusher::new(&reg)
        .push_image("library/busybox", "1.36", &img)
        .unwrap();
    let env = Env::new(SnapshotterKind::Overlayfs).await;

    let name = format!("{}/library/busybox:1.36", reg.host());
    let got = env.store.pull(&r(&name), None, |_| {}).await.unwrap();
    assert_eq!(got.id, img.id());
    assert_eq!(got.repo_tags, vec![name.clone()]);
    assert_eq!(
        got.repo_digests,
        vec![format!("{}/library/busybox@{digest}", reg.host())]
    );
    assert_eq!(got.config.cmd, Some(vec!["sh".to_string()]));
    let fs0 = env.layer_fs(&got.layers[0].chain_id);
    assert!(fs0.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(fs0.join("bin/ls")).unwrap().to_str(),
        Some("busybox")
    );
    let fs1 = env.layer_fs(&got.layers[1].chain_id);
    assert!(
        std::fs::read_to_string(fs1.join("etc/passwd"))
            .unwrap()
            .contains("berth:x:1000")
    );

    // By digest: the same image, no new tag, found under the digest too.
    let by_digest = format!("{}/library/busybox@{digest}", reg.host());
    let again = env.store.pull(&r(&by_digest), None, |_| {}).await.unwrap();
    assert_eq!(again.id, img.id());
    assert_eq!(env.store.list().unwrap().len(), 1);
    assert_eq!(env.store.get(&by_digest).unwrap().id, img.id());
    assert_eq!(env.store.get(img.id()).unwrap().id, img.id());
    assert_eq!(env.store.get(&img.id()[7..19]).unwrap().id, img.id());

    // Without a tag means :latest.
    Pusher::new(&reg)
        .push_image("library/busybox", "latest", &img)
        .unwrap();
    let latest = env
        .store
        .pull(&r(&format!("{}/library/busybox", reg.host())), None, |_| {})
        .await
        .unwrap();
    assert!(
        latest
            .repo_tags
            .contains(&format!("{}/library/busybox:latest", reg.host()))
    );
    assert!(latest.repo_tags.contains(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_selects_host_platform_and_keeps_index_digest() {
    let reg = Registry::start().unwrap();
    let arm = ImageBuilder::new(Format::Docker)
        .layer(
            LayerBuilder::new()
                .file("arch", "arm64")
                .build(Compression::Gzip)
                .unwrap(),
        )
        .platform("linux", "arm64", Some("v8"))
        .build()
        .unwrap();
    let amd = ImageBuilder::new(Format::Docker)
        .layer(
            LayerBuilder::new()
                .file("arch", "amd64")
                .build(Compression::Zstd)
                .unwrap(),
        )
        .build()
        .unwrap();
    let index = IndexBuilder::new(Format::Docker)
        .image(arm)
        .image(amd.clone())
        .build()
        .unwrap();
    let index_digest = Pusher::new(&reg).push_index("multi", "v1", &index).unwrap();
    let env = Env::new(SnapshotterKind::Overlayfs).await;

    let got = env
        .store
        .pull(&r(&format!("{}/multi:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    assert_eq!(got.id, amd.id());
    assert_eq!(got.manifest_digest, amd.digest());
    assert_eq!(
        std::fs::read_to_string(env.layer_fs(&got.layers[0].chain_id).join("arch")).unwrap(),
        "amd64"
    );

    let by_index = format!("{}/multi@{index_digest}", reg.host());
    let got = env.store.pull(&r(&by_index), None, |_| {}).await.unwrap();
    assert!(
        got.repo_digests.contains(&by_index),
        "{:?}",
        got.repo_digests
    );
    assert!(!got.repo_digests.iter().any(|d| d.ends_with(amd.digest())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_basic_auth() {
    let reg = Registry::start_with_htpasswd("alice", "s3cret").unwrap();
    let img = ImageBuilder::new(Format::Oci)
        .layer(
            LayerBuilder::new()
                .file("secret", "data")
                .build(Compression::None)
                .unwrap(),
        )
        .build()
        .unwrap();
    Pusher::new(&reg)
        .push_image("private/app", "v1", &img)
        .unwrap();
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let name = r(&format!("{}/private/app:v1", reg.host()));

    let err = env.store.pull(&name, None, |_| {}).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    let err = env
        .store
        .pull(&name, Some(&Auth::basic("alice", "wrong")), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("credentials rejected"), "{err}");

    let auth = Auth {
        auth: Some("YWxpY2U6czNjcmV0".into()),
        ..Default::default()
    };
    let got = env.store.pull(&name, Some(&auth), |_| {}).await.unwrap();
    assert_eq!(got.id, img.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_blob_or_wrong_size_stores_nothing() {
    let reg = Registry::start().unwrap();
    let layer = LayerBuilder::new()
        .file("big", vec![7u8; 200_000])
        .build(Compression::Gzip)
        .unwrap();
    let img = ImageBuilder::new(Format::Oci)
        .layers(busybox_base_layers())
        .layer(layer.clone())
        .build()
        .unwrap();
    Pusher::new(&reg)
        .push_image("app", "corrupt", &img)
        .unwrap();
    reg.corrupt_blob(&layer.digest).unwrap();
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let err = env
        .store
        .pull(&r(&format!("{}/app:corrupt", reg.host())), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(env.store.list().unwrap().is_empty());
    assert!(!env.blobs().contains(&layer.digest[7..].to_string()));
    assert!(env.snapshot_dirs().is_empty(), "{:?}", env.snapshot_dirs());
    assert!(env.blobs().is_empty(), "{:?}", env.blobs());

    let small = LayerBuilder::new()
        .file("f", "x")
        .build(Compression::Gzip)
        .unwrap();
    let lying = ImageBuilder::new(Format::Oci)
        .layer(small.clone())
        .wrong_layer_size(0, small.size() - 5)
        .build()
        .unwrap();
    Pusher::new(&reg)
        .push_image("app", "short", &lying)
        .unwrap();
    let err = env
        .store
        .pull(&r(&format!("{}/app:short", reg.host())), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    let lying = ImageBuilder::new(Format::Oci)
        .layer(small.clone())
        .wrong_layer_size(0, small.size() + 5)
        .build()
        .unwrap();
    Pusher::new(&reg).push_image("app", "long", &lying).unwrap();
    let err = env
        .store
        .pull(&r(&format!("{}/app:long", reg.host())), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    assert!(env.store.list().unwrap().is_empty());
    assert!(env.blobs().is_empty(), "{:?}", env.blobs());
    assert!(env.snapshot_dirs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_fetch_each_layer_once() {
    let reg = Registry::start().unwrap();
    let img = busybox();
    Pusher::new(&reg)
        .push_image("library/busybox", "latest", &img)
        .unwrap();
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let name = r(&format!("{}/library/busybox", reg.host()));
    let (s1, s2) = (started.clone(), started.clone());
    let count = move |s: std::sync::Arc<std::sync::atomic::AtomicUsize>| {
        move |e| {
            if let berth_snapshotter::ProgressEvent::LayerStarted { .. } = e {
                s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    };
    let (a, b) = tokio::join!(
        env.store.pull(&name, None, count(s1)),
        env.store.pull(&name, None, count(s2))
    );
    assert_eq!(a.unwrap().id, b.unwrap().id);
    assert_eq!(
        started.load(std::sync::atomic::Ordering::SeqCst),
        img.layers.len()
    );
}
