//! The daemon's foundation as a kubelet and an operator meet it: the socket, the config, Version, Status,
//! RuntimeConfig, UpdateRuntimeConfig, and honest `Unimplemented` answers for what is not built yet.

use berth_cri::api::*;
use berth_tests::{Daemon, berth, config_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_names_berth_and_cri_v1() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.client().await.unwrap();
    let v = c
        .runtime
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.runtime_api_version, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_conditions_and_verbose_config() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.client().await.unwrap();
    let s = c
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conditions = s.status.unwrap().conditions;
    let runtime = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .expect("RuntimeReady condition");
    assert!(
        runtime.status,
        "runtime not ready on the CI machine: {runtime:?}"
    );
    // The harness gives each daemon an empty CNI conf dir: the network is not ready, and says why.
    let network = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady condition");
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert!(
        network.message.contains("net.d"),
        "message should name the conf dir: {}",
        network.message
    );

    let config: serde_json::Value =
        serde_json::from_str(&s.info["config"]).expect("config is JSON");
    assert_eq!(config["socket"], d.socket.display().to_string());
    assert_eq!(config["snapshotter"], "overlayfs");
    let names: Vec<_> = s.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
    assert!(
        names.contains(&"berth") && names.contains(&"runc"),
        "{names:?}"
    );

    let terse = c
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(terse.info.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_becomes_ready_when_a_cni_config_appears() {
    let d = Daemon::start().await.unwrap();
    let conf_dir = d.dir.path().join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(
        conf_dir.join("10-test.conflist"),
        r#"{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"loopback"}]}"#,
    )
    .unwrap();
    let mut c = d.client().await.unwrap();
    let s = c
        .runtime
        .status(StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let network = s
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(network.status, "{network:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_config_reports_the_configured_cgroup_driver() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.client().await.unwrap();
    let r = c
        .runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.linux.unwrap().cgroup_driver,
        CgroupDriver::Cgroupfs as i32
    );

    let d = Daemon::start_with("cgroup_driver = \"systemd\"")
        .await
        .unwrap();
    let mut c = d.client().await.unwrap();
    let r = c
        .runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.linux.unwrap().cgroup_driver, CgroupDriver::Systemd as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_runtime_config_records_the_pod_cidr_across_restarts() {
    let mut d = Daemon::start().await.unwrap();
    let mut c = d.client().await.unwrap();
    let update = |cidr: &str| UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    c.runtime
        .update_runtime_config(update("10.244.3.0/24"))
        .await
        .unwrap();
    let bad = c
        .runtime
        .update_runtime_config(update("10.244.3.0"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    d.terminate().unwrap();
    d.spawn().await.unwrap();
    let mut c = d.client().await.unwrap();
    let s = c
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.info["podCIDR"], "10.244.3.0/24");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbuilt_rpc_answers_unimplemented_naming_what_is_missing() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.client().await.unwrap();
    let err = c
        .runtime
        .checkpoint_container(CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(
        err.message().contains("CheckpointContainer"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("checkpoint"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_socket_is_refused() {
    let d = Daemon::start().await.unwrap();
    let (ok, _, stderr) = berth(&["--config", d.config_path.to_str().unwrap(), "serve"]).unwrap();
    assert!(!ok, "second daemon must fail");
    assert!(stderr.contains("already serving"), "{stderr}");
    // The first one is unharmed.
    let mut c = d.client().await.unwrap();
    c.runtime.version(VersionRequest::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_held_by_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), config_text(dir.path(), "")).unwrap();
    let _squatter = std::os::unix::net::UnixListener::bind(dir.path().join("berth.sock")).unwrap();
    let (ok, _, stderr) = berth(&[
        "--config",
        dir.path().join("config.toml").to_str().unwrap(),
        "serve",
    ])
    .unwrap();
    assert!(!ok);
    assert!(stderr.contains("in use by another process"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_no_socket_and_kill_leaves_a_stale_one_that_is_replaced() {
    let mut d = Daemon::start().await.unwrap();
    let status = d.terminate().unwrap();
    assert!(status.success(), "clean shutdown exits 0, got {status}");
    assert!(!d.socket.exists(), "socket left behind after SIGTERM");

    d.spawn().await.unwrap();
    d.kill().unwrap();
    assert!(
        d.socket.exists(),
        "SIGKILL cannot clean up: the socket file stays"
    );
    d.spawn().await.unwrap();
    let mut c = d.client().await.unwrap();
    c.runtime.version(VersionRequest::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_mode_0660() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start().await.unwrap();
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn a_bad_config_is_rejected_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config_text(dir.path(), "snapshoter = \"native\"")).unwrap();
    let (ok, _, stderr) = berth(&["--config", path.to_str().unwrap(), "serve"]).unwrap();
    assert!(!ok);
    assert!(
        stderr.contains("snapshoter") && stderr.contains("line 5"),
        "{stderr}"
    );
    assert!(!dir.path().join("berth.sock").exists());

    std::fs::write(&path, config_text(dir.path(), "cgroup_driver = 3")).unwrap();
    let (ok, _, stderr) = berth(&["--config", path.to_str().unwrap(), "serve"]).unwrap();
    assert!(!ok);
    assert!(
        stderr.contains("cgroup_driver") || stderr.contains("line 5"),
        "{stderr}"
    );

    let (ok, _, stderr) = berth(&["--config", "/nonexistent/berth.toml", "serve"]).unwrap();
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/berth.toml"), "{stderr}");
}

#[test]
fn config_default_prints_every_setting_and_parses_back() {
    let (ok, stdout, _) = berth(&["config", "default"]).unwrap();
    assert!(ok);
    for key in [
        "root =",
        "state =",
        "socket =",
        "log_level =",
        "snapshotter =",
        "cgroup_driver =",
        "conf_dir =",
        "bin_dirs =",
        "address =",
        "[runtimes.berth]",
    ] {
        assert!(stdout.contains(key), "missing {key} in:\n{stdout}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.toml");
    std::fs::write(&path, &stdout).unwrap();
    let (ok, _, stderr) = berth(&["--config", path.to_str().unwrap(), "config", "check"]).unwrap();
    assert!(ok, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_describes_storage_cgroups_runtimes_and_network() {
    let d = Daemon::start().await.unwrap();
    let (ok, stdout, stderr) =
        berth(&["--config", d.config_path.to_str().unwrap(), "info"]).unwrap();
    assert!(ok, "{stderr}");
    for line in [
        "Storage Driver: overlayfs",
        "Backing Filesystem:",
        "Cgroup Version:",
        "Cgroup Driver: cgroupfs",
        "Runtimes:",
        "Kernel Version:",
        "daemon running",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The harness's conf dir is empty: info says so as a missing prerequisite.
    assert!(
        stdout.contains("WARNING: no CNI network config"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_cri_client_still_speaks_to_berth() {
    // k8s-cri 0.11 is generated from an older CRI: the wire must stay compatible for an older kubelet.
    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    let d = Daemon::start().await.unwrap();
    let channel = berth_cri::client::channel(&d.socket).await.unwrap();
    let mut old = RuntimeServiceClient::new(channel);
    let v = old
        .version(k8s_cri::v1::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    let s = old
        .status(k8s_cri::v1::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.status.unwrap().conditions.len(), 2);
}

#[test]
fn the_harness_registry_serves_a_multi_layer_busybox_image() {
    let fixture = berth_tests::BusyboxRegistry::start().unwrap();
    assert!(
        fixture.image.layers.len() >= 2,
        "busybox image should have at least two layers"
    );
    let url = format!(
        "{}/v2/library/busybox/manifests/latest",
        fixture.registry.url()
    );
    let body = ureq::get(&url)
        .set("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(
        berth_testkit::sha256_digest(body.as_bytes()),
        fixture.digest
    );
    let manifest: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        fixture.image.layers.len()
    );
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let blob = ureq::get(&format!(
        "{}/v2/library/busybox/blobs/{layer}",
        fixture.registry.url()
    ))
    .call()
    .unwrap();
    assert_eq!(blob.status(), 200);
}
