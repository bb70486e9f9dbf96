//! Driving a daemon as the kubelet does: kubelet-shaped pod and container configs and the calls tests repeat.
//!
//! Helpers panic on unexpected errors (they are test code); the ones whose failure a test checks return `Result`.

use std::collections::HashMap;
use std::time::Duration;

use berth_cri::api::*;
use berth_cri::client::Client;

use crate::{BusyboxRegistry, Daemon};

/// A daemon, a registry holding busybox (already pulled), and a CRI client: what a test drives.
pub struct Env {
    // Field order is drop order: the daemon (and the pods it cleans) before the registry.
    pub c: Client,
    pub d: Daemon,
    pub reg: BusyboxRegistry,
}

pub async fn env() -> Env {
    env_on(Daemon::start().await.unwrap()).await
}

/// An [`Env`] around a daemon started some other way (another config, a prepared network).
pub async fn env_on(d: Daemon) -> Env {
    let reg = BusyboxRegistry::start().unwrap();
    let mut c = d.client().await.unwrap();
    c.image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: reg.reference.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    Env { c, d, reg }
}

pub fn pod_config(env: &Env, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: env
            .d
            .dir
            .path()
            .join("logs")
            .join(name)
            .display()
            .to_string(),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        labels: HashMap::from([("app".into(), name.into())]),
        // As the kubelet sends it: the pod's network and IPC, a PID namespace per container.
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_config(env: &Env, name: &str, args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: env.reg.reference.clone(),
            ..Default::default()
        }),
        command: args.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: HashMap::from([("container".into(), name.into())]),
        ..Default::default()
    }
}

pub async fn run_pod(env: &mut Env, name: &str) -> (String, PodSandboxConfig) {
    let config = pod_config(env, name);
    let id = env
        .c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    (id, config)
}

pub async fn create(
    env: &mut Env,
    pod: &(String, PodSandboxConfig),
    config: ContainerConfig,
) -> Result<String, tonic::Status> {
    env.c
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.0.clone(),
            config: Some(config),
            sandbox_config: Some(pod.1.clone()),
        })
        .await
        .map(|r| r.into_inner().container_id)
}

/// Creates a container `name` running `args` from the harness image.
pub async fn create_new(
    env: &mut Env,
    pod: &(String, PodSandboxConfig),
    (name, args): (&str, &[&str]),
) -> Result<String, tonic::Status> {
    let config = container_config(env, name, args);
    create(env, pod, config).await
}

pub async fn start(env: &mut Env, id: &str) {
    env.c
        .runtime
        .start_container(StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

pub async fn status(env: &mut Env, id: &str) -> ContainerStatus {
    env.c
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

pub async fn wait_exited(env: &mut Env, id: &str) -> ContainerStatus {
    for _ in 0..500 {
        let s = status(env, id).await;
        if s.state == ContainerState::ContainerExited as i32 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("container {id} did not exit: {:?}", status(env, id).await);
}

pub async fn exec(
    env: &mut Env,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<ExecSyncResponse, tonic::Status> {
    env.c
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}
