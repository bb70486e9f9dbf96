//! https registries: verified against the system roots, or trusted anyway when configured insecure.

mod common;

use berth_snapshotter::{Error, HostConfig, RegistryConfig, SnapshotterKind};
use berth_testkit::{Pusher, Registry, busybox};
use common::{Env, r};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_registry_needs_trust_or_insecure() {
    let plain = Registry::start().unwrap();
    let img = busybox();
    Pusher::new(&plain).push_image("bb", "v1", &img).unwrap();
    let tls = Registry::start_tls_front(&plain).unwrap();
    let name = "secure.example.invalid/bb:v1";

    // Self-signed and not in the system roots: refused, with the certificate named as the reason.
    let mut config = RegistryConfig::default();
    config.hosts.insert(
        "secure.example.invalid".into(),
        HostConfig {
            server: Some(tls.url()),
            ..Default::default()
        },
    );
    let env = Env::with_config(SnapshotterKind::Overlayfs, config.clone()).await;
    let err = env.store.pull(&r(name), None, |_| {}).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // insecure: https without verification.
    config
        .hosts
        .get_mut("secure.example.invalid")
        .unwrap()
        .insecure = true;
    let env = Env::with_config(SnapshotterKind::Overlayfs, config).await;
    let got = env.store.pull(&r(name), None, |_| {}).await.unwrap();
    assert_eq!(got.id, img.id());
}
