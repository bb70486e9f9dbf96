//! `berth image pull|ls|rm|import` against a running daemon, as an operator of an air-gapped host uses them.

use berth_testkit::archive::{write_docker_save, write_oci_layout};
use berth_tests::{BusyboxRegistry, Daemon, berth};

fn image(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--config", d.config_path.to_str().unwrap(), "image"];
    all.extend_from_slice(args);
    berth(&all).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_shows_progress_then_ls_and_rm() {
    let reg = BusyboxRegistry::start().unwrap();
    let d = Daemon::start().await.unwrap();
    let (ok, out, err) = image(&d, &["pull", &reg.reference]);
    assert!(ok, "{err}");
    let layers = reg.image.layers.len();
    assert!(out.contains(&format!("{layers} layers")), "{out}");
    assert_eq!(
        out.matches(": done ").count(),
        layers,
        "one line per fetched layer:\n{out}"
    );
    assert!(
        out.contains("Image is up to date") && out.contains(reg.image.id()),
        "{out}"
    );

    let (ok, out, _) = image(&d, &["ls"]);
    assert!(ok);
    assert!(out.contains(&reg.reference), "{out}");

    let (ok, _, err) = image(&d, &["rm", &reg.reference]);
    assert!(ok, "{err}");
    let (_, out, _) = image(&d, &["ls"]);
    assert!(!out.contains(&reg.reference), "{out}");

    let (ok, _, err) = image(&d, &["pull", "127.0.0.1:1/no/registry:here"]);
    assert!(!ok);
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_docker_save_and_oci_layout_archives() {
    let img = berth_testkit::busybox();
    let d = Daemon::start().await.unwrap();
    let docker = d.dir.path().join("docker.tar");
    let oci = d.dir.path().join("oci.tar");
    write_docker_save(&img, &["example.com/air/gapped:v1"], &docker).unwrap();
    write_oci_layout(&img, "example.com/air/oci:v2", &oci).unwrap();

    let (ok, out, err) = image(&d, &["import", docker.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("example.com/air/gapped:v1"), "{out}");
    let (ok, out, err) = image(&d, &["import", oci.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("example.com/air/oci:v2"), "{out}");

    // One image (same config), two names, both usable through the CRI.
    let mut c = d.client().await.unwrap();
    let list = c
        .image
        .list_images(berth_cri::api::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].id, img.id());
    assert_eq!(list[0].repo_tags.len(), 2, "{:?}", list[0].repo_tags);

    let (ok, _, err) = image(&d, &["import", "/nonexistent.tar"]);
    assert!(!ok);
    assert!(err.contains("nonexistent"), "{err}");
}
