//! Bearer-token auth flows, mirrors and server overrides, and interrupted pulls, against the in-process fake registry.

mod common;

use std::time::Duration;

use berth_snapshotter::{Auth, Error, HostConfig, ProgressEvent, RegistryConfig, SnapshotterKind};
use berth_testkit::{FAKE_TOKEN, FakeAuth, FakeRegistry, busybox};
use common::{Env, r};

fn token_requests(reg: &FakeRegistry) -> usize {
    reg.requests()
        .iter()
        .filter(|l| l.contains("/token"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_bearer_token() {
    let reg = FakeRegistry::start(FakeAuth {
        bearer: true,
        ..Default::default()
    })
    .unwrap();
    let img = busybox();
    reg.add_image("library/busybox", "latest", &img);
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let got = env
        .store
        .pull(&r(&format!("{}/library/busybox", reg.host())), None, |_| {})
        .await
        .unwrap();
    assert_eq!(got.id, img.id());
    assert_eq!(
        token_requests(&reg),
        1,
        "the token is fetched once and reused: {:?}",
        reg.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_with_credentials_identity_and_registry_tokens() {
    let reg = FakeRegistry::start(FakeAuth {
        bearer: true,
        basic: Some(("bob".into(), "pw".into())),
        refresh_token: Some("refresh-me".into()),
    })
    .unwrap();
    let img = busybox();
    reg.add_image("team/app", "v1", &img);
    let name = r(&format!("{}/team/app:v1", reg.host()));

    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let err = env.store.pull(&name, None, |_| {}).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    let err = env
        .store
        .pull(&name, Some(&Auth::basic("bob", "nope")), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    env.store
        .pull(&name, Some(&Auth::basic("bob", "pw")), |_| {})
        .await
        .unwrap();

    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let identity = Auth {
        identity_token: Some("refresh-me".into()),
        ..Default::default()
    };
    env.store
        .pull(&name, Some(&identity), |_| {})
        .await
        .unwrap();
    assert!(reg.requests().iter().any(|l| l.starts_with("POST /token")));

    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let before = token_requests(&reg);
    let direct = Auth {
        registry_token: Some(FAKE_TOKEN.into()),
        ..Default::default()
    };
    env.store.pull(&name, Some(&direct), |_| {}).await.unwrap();
    assert_eq!(
        token_requests(&reg),
        before,
        "a registry token is used as is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_in_order_and_server_replaces_upstream() {
    let mirror = FakeRegistry::start(FakeAuth::default()).unwrap();
    let img = busybox();
    mirror.add_image("library/busybox", "latest", &img);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = RegistryConfig::default();
    // docker.io: a dead mirror, then a live one; upstream (the internet) is never needed.
    config.hosts.insert(
        "docker.io".into(),
        HostConfig {
            mirrors: vec![format!("http://127.0.0.1:{dead}"), mirror.host()],
            ..Default::default()
        },
    );
    // An air-gapped name: requests go to `server`, never to the (unresolvable) upstream.
    config.hosts.insert(
        "registry.airgap.invalid".into(),
        HostConfig {
            server: Some(format!("http://{}", mirror.host())),
            ..Default::default()
        },
    );
    let env = Env::with_config(SnapshotterKind::Overlayfs, config).await;
    let got = env.store.pull(&r("busybox"), None, |_| {}).await.unwrap();
    assert_eq!(
        got.repo_tags,
        vec!["docker.io/library/busybox:latest".to_string()]
    );

    mirror.add_image("pause", "3.10", &img);
    let got = env
        .store
        .pull(&r("registry.airgap.invalid/pause:3.10"), None, |_| {})
        .await
        .unwrap();
    assert!(
        got.repo_tags
            .contains(&"registry.airgap.invalid/pause:3.10".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_pull_leaves_nothing_and_retry_succeeds() {
    let reg = FakeRegistry::start(FakeAuth::default()).unwrap();
    let img = busybox();
    reg.add_image("bb", "v1", &img);
    reg.throttle(Some(Duration::from_millis(20)));
    let env = Env::new(SnapshotterKind::Overlayfs).await;
    let store = std::sync::Arc::new(env.store);
    let name = r(&format!("{}/bb:v1", reg.host()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = {
        let (store, name) = (store.clone(), name.clone());
        tokio::spawn(async move {
            store
                .pull(&name, None, move |e| {
                    if let ProgressEvent::LayerProgress { .. } = e {
                        let _ = tx.send(());
                    }
                })
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap();
    task.abort();
    let _ = task.await;
    reg.throttle(None);
    assert!(store.list().unwrap().is_empty(), "no half-visible image");
    // The blocking unpack threads notice the closed stream and give up; then "restart" the store.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store = std::sync::Arc::try_unwrap(store)
        .ok()
        .expect("no other owner");
    drop(store);
    let store = common::open(env.dir.path(), SnapshotterKind::Overlayfs).await;
    let root = env.dir.path().join("root");
    assert_eq!(
        std::fs::read_dir(root.join("content/ingest"))
            .unwrap()
            .count(),
        0
    );
    let got = store.pull(&name, None, |_| {}).await.unwrap();
    assert_eq!(got.id, img.id());
    let stats = store.gc().await.unwrap();
    assert_eq!(
        stats,
        Default::default(),
        "no orphans after the retried pull"
    );
}
