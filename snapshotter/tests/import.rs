mod common;

use berth_snapshotter::SnapshotterKind;
use berth_testkit::{archive, busybox};
use common::Env;

async fn import_both(kind: SnapshotterKind) {
    let env = Env::new(kind).await;
    let img = busybox();
    let oci = env.dir.path().join("oci.tar");
    let docker = env.dir.path().join("docker.tar");
    archive::write_oci_layout(&img, "example.com/tools/busybox:v1", &oci).unwrap();
    archive::write_docker_save(
        &img,
        &["example.com/tools/busybox:v2", "busybox:latest"],
        &docker,
    )
    .unwrap();

    let got = env.store.import(&oci).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, img.id());
    assert_eq!(
        got[0].repo_tags,
        vec!["example.com/tools/busybox:v1".to_string()]
    );
    assert_eq!(
        got[0].repo_digests,
        vec![format!("example.com/tools/busybox@{}", img.digest())]
    );

    let got = env.store.import(&docker).await.unwrap();
    assert_eq!(
        got[0].id,
        img.id(),
        "docker save of the same image is the same image"
    );
    let image = env.store.get("busybox").unwrap();
    assert_eq!(image.id, img.id());
    assert_eq!(image.repo_tags.len(), 3, "{:?}", image.repo_tags);
    assert_eq!(env.store.list().unwrap().len(), 1);
    let top = image.top_snapshot().unwrap();
    assert!(
        env.layer_fs(&image.layers[0].chain_id)
            .join("bin/busybox")
            .is_file()
    );
    assert!(env.store.snapshotter().stat(top).is_ok());
    assert_eq!(
        std::fs::read_dir(env.root().join("content/ingest"))
            .unwrap()
            .count(),
        0
    );

    let bogus = env.dir.path().join("bogus.tar");
    std::fs::write(&bogus, vec![0u8; 2048]).unwrap();
    assert!(env.store.import(&bogus).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_oci_layout_and_docker_save_overlay() {
    import_both(SnapshotterKind::Overlayfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_oci_layout_and_docker_save_native() {
    import_both(SnapshotterKind::Native).await;
}
