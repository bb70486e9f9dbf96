//! The ImageService as a kubelet and crictl use it, against a real registry on loopback.

use berth_cri::api::*;
use berth_testkit::{Compression, Format, ImageBuilder, LayerBuilder, Pusher, busybox_base_layers};
use berth_tests::{BusyboxRegistry, Daemon};

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn pull(c: &mut berth_cri::client::Client, image: &str) -> Result<String, tonic::Status> {
    c.image
        .pull_image(PullImageRequest {
            image: spec(image),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn status(c: &mut berth_cri::client::Client, image: &str) -> Option<Image> {
    c.image
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
}

async fn fs_bytes(c: &mut berth_cri::client::Client) -> (u64, u64) {
    let r = c
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let img = r.image_filesystems[0].used_bytes.unwrap().value;
    let ctr = r.container_filesystems[0].used_bytes.unwrap().value;
    (img, ctr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_list_status_remove_by_tag_id_and_digest() {
    let reg = BusyboxRegistry::start().unwrap();
    let d = Daemon::start().await.unwrap();
    let mut c = d.client().await.unwrap();
    let (before, _) = fs_bytes(&mut c).await;

    let id = pull(&mut c, &reg.reference).await.unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(id, reg.image.id(), "image_ref is the config digest");

    let list = c
        .image
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(list.len(), 1);
    let img = &list[0];
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, vec![reg.reference.clone()]);
    let repo_digest = format!("{}/library/busybox@{}", reg.registry.host(), reg.digest);
    assert_eq!(img.repo_digests, vec![repo_digest.clone()]);
    assert!(img.size > 0);
    assert!(!img.pinned);

    // One image whichever name a client uses.
    for name in [
        reg.reference.as_str(),
        id.as_str(),
        &id[7..19],
        repo_digest.as_str(),
    ] {
        assert_eq!(
            status(&mut c, name).await.map(|i| i.id),
            Some(id.clone()),
            "ImageStatus({name})"
        );
    }
    let verbose = c
        .image
        .image_status(ImageStatusRequest {
            image: spec(&id),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["architecture"], "amd64");

    let (after, _) = fs_bytes(&mut c).await;
    assert!(
        after > before,
        "ImageFsInfo should grow with a pull: {before} -> {after}"
    );

    c.image
        .remove_image(RemoveImageRequest {
            image: spec(&repo_digest),
        })
        .await
        .unwrap();
    assert!(
        status(&mut c, &id).await.is_none(),
        "removed image still reported"
    );
    // Idempotent.
    c.image
        .remove_image(RemoveImageRequest { image: spec(&id) })
        .await
        .unwrap();
    let (gone, _) = fs_bytes(&mut c).await;
    assert!(
        gone < after,
        "ImageFsInfo should shrink after remove: {after} -> {gone}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tags_of_one_image_untag_one_at_a_time() {
    let reg = BusyboxRegistry::start().unwrap();
    Pusher::new(&reg.registry)
        .push_image("other/bb", "v1", &reg.image)
        .unwrap();
    let d = Daemon::start().await.unwrap();
    let mut c = d.client().await.unwrap();
    let other = format!("{}/other/bb:v1", reg.registry.host());
    let a = pull(&mut c, &reg.reference).await.unwrap();
    let b = pull(&mut c, &other).await.unwrap();
    assert_eq!(a, b, "the same image from two repositories is one image");
    let img = status(&mut c, &a).await.unwrap();
    assert_eq!(img.repo_tags.len(), 2, "{:?}", img.repo_tags);

    c.image
        .remove_image(RemoveImageRequest {
            image: spec(&other),
        })
        .await
        .unwrap();
    let img = status(&mut c, &a)
        .await
        .expect("untagging one name keeps the image");
    assert_eq!(img.repo_tags, vec![reg.reference.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_user_is_reported_as_uid_or_username() {
    let reg = berth_testkit::Registry::start().unwrap();
    let layers = busybox_base_layers();
    let p = Pusher::new(&reg);
    let named = ImageBuilder::new(Format::Oci)
        .layers(layers.clone())
        .user("berth")
        .build()
        .unwrap();
    let numeric = ImageBuilder::new(Format::Docker)
        .layers(layers)
        .user("1000:1000")
        .build()
        .unwrap();
    p.push_image("app/named", "v1", &named).unwrap();
    p.push_image("app/numeric", "v1", &numeric).unwrap();
    let d = Daemon::start().await.unwrap();
    let mut c = d.client().await.unwrap();
    let named = pull(&mut c, &format!("{}/app/named:v1", reg.host()))
        .await
        .unwrap();
    let numeric = pull(&mut c, &format!("{}/app/numeric:v1", reg.host()))
        .await
        .unwrap();
    let named = status(&mut c, &named).await.unwrap();
    assert_eq!((named.uid, named.username.as_str()), (None, "berth"));
    let numeric = status(&mut c, &numeric).await.unwrap();
    assert_eq!(numeric.uid.map(|u| u.value), Some(1000));
    assert_eq!(numeric.username, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_registry_serves_docker_io_names_and_pinned_images_are_marked() {
    let reg = BusyboxRegistry::start().unwrap();
    let extra = format!(
        "pinned_images = [\"busybox\"]\n[registries.\"docker.io\"]\nserver = \"http://{}\"",
        reg.registry.host()
    );
    let d = Daemon::start_with(&extra).await.unwrap();
    let mut c = d.client().await.unwrap();
    // `busybox` normalises to docker.io/library/busybox:latest, which the config sends to the local registry only.
    let id = pull(&mut c, "busybox").await.unwrap();
    let img = status(&mut c, "docker.io/library/busybox:latest")
        .await
        .unwrap();
    assert_eq!(img.id, id);
    assert_eq!(
        img.repo_tags,
        vec!["docker.io/library/busybox:latest".to_string()]
    );
    assert!(img.pinned, "busybox is in pinned_images");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_codes() {
    let reg = BusyboxRegistry::start().unwrap();
    let d = Daemon::start().await.unwrap();
    let mut c = d.client().await.unwrap();
    let e = pull(&mut c, "").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = pull(&mut c, "UPPER/case:tag").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = pull(
        &mut c,
        &format!("{}/library/nosuch:latest", reg.registry.host()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("nosuch"), "{}", e.message());
    assert!(status(&mut c, "never/pulled:v1").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_midway_leaves_nothing_visible_and_succeeds_when_retried() {
    let reg = berth_testkit::Registry::start().unwrap();
    // Incompressible layers large enough that the kill lands while they stream.
    let mut layers = busybox_base_layers();
    for seed in 0..3u8 {
        let mut data = vec![0u8; 24 << 20];
        let mut x: u64 = 0x9E3779B97F4A7C15 ^ seed as u64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        layers.push(
            LayerBuilder::new()
                .file(&format!("blob{seed}"), data)
                .build(Compression::Gzip)
                .unwrap(),
        );
    }
    let image = ImageBuilder::new(Format::Oci)
        .layers(layers)
        .build()
        .unwrap();
    Pusher::new(&reg)
        .push_image("big/app", "v1", &image)
        .unwrap();
    let reference = format!("{}/big/app:v1", reg.host());

    let mut d = Daemon::start().await.unwrap();
    let socket = d.socket.clone();
    let r = reference.clone();
    let pulling = tokio::spawn(async move {
        let mut c = berth_cri::client::Client::connect(&socket).await.unwrap();
        pull(&mut c, &r).await
    });
    // Kill once the pull has written something to the content store.
    let ingest = d.dir.path().join("root/content");
    for _ in 0..500 {
        if dir_bytes(&ingest) > 1 << 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    d.kill().unwrap();
    assert!(pulling.await.unwrap().is_err(), "the pull was interrupted");

    d.spawn().await.unwrap();
    let mut c = d.client().await.unwrap();
    assert!(
        status(&mut c, &reference).await.is_none(),
        "a half-pulled image must not be visible"
    );
    let id = pull(&mut c, &reference).await.unwrap();
    assert_eq!(id, image.id());
    c.image
        .remove_image(RemoveImageRequest { image: spec(&id) })
        .await
        .unwrap();
    // Nothing referenced any more: no blob and no snapshot may remain.
    let blobs = d.dir.path().join("root/content/blobs/sha256");
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "orphan blobs after remove: {left:?}");
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
