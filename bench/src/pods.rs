//! What the lifecycle and density parts share: a local registry holding busybox and a pause image, the runtimes
//! to measure, and pod and container configs as the kubelet sends them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use berth_cri::api::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest,
};
use berth_cri::client::Client;
use berth_testkit::{Format, ImageBuilder, Pusher, Registry, busybox, busybox_base_layers};

use crate::berth_bin;
use crate::target::{Target, containerd_installed};

/// The pause image's command line.
pub const PAUSE: &str = "/bin/busybox sleep 2147483647";

/// A registry on loopback with `bench/busybox:latest` and `bench/pause:latest` (busybox-static sleeping for ever,
/// standing in for registry.k8s.io/pause, which containerd needs for every pod; Berth needs none).
pub struct Images {
    pub registry: Registry,
    pub busybox: String,
    pub pause: String,
}

impl Images {
    pub fn start() -> Result<Images> {
        let registry = Registry::start().map_err(|e| anyhow!("starting registry: {e}"))?;
        let pause = ImageBuilder::new(Format::Oci)
            .layers(busybox_base_layers())
            .entrypoint(&PAUSE.split(' ').collect::<Vec<_>>())
            .build()
            .map_err(|e| anyhow!("{e}"))?;
        let pusher = Pusher::new(&registry);
        pusher
            .push_image("bench/busybox", "latest", &busybox())
            .map_err(|e| anyhow!("pushing busybox: {e}"))?;
        pusher
            .push_image("bench/pause", "latest", &pause)
            .map_err(|e| anyhow!("pushing pause: {e}"))?;
        let host = registry.host();
        Ok(Images {
            busybox: format!("{host}/bench/busybox:latest"),
            pause: format!("{host}/bench/pause:latest"),
            registry,
        })
    }

    /// The runtimes to measure, in order: Berth, then containerd when installed.
    pub fn runtimes() -> Vec<&'static str> {
        let mut v = vec!["berth"];
        if containerd_installed() {
            v.push("containerd");
        } else {
            println!("containerd not installed: measuring berth alone");
        }
        v
    }

    /// Starts `name` on a fresh root with busybox (and, for containerd, the pause image) already pulled.
    pub async fn target(&self, name: &str) -> Result<Target> {
        let target = match name {
            "berth" => Target::berth(&berth_bin()).await?,
            _ => Target::containerd(&self.registry.host(), Some(&self.pause)).await?,
        };
        let mut c = target.client().await?;
        pull(&mut c, &self.busybox).await?;
        if target.name == "containerd" {
            pull(&mut c, &self.pause).await?;
        }
        Ok(target)
    }
}

async fn pull(c: &mut Client, image: &str) -> Result<()> {
    c.image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// A pod as the kubelet sends it: the pod's network and IPC, a PID namespace per container, a log directory
/// (created first, as the kubelet does), no cgroup parent.
pub fn pod_config(name: &str, logs: &Path) -> Result<PodSandboxConfig> {
    let log_directory = logs.join(name);
    std::fs::create_dir_all(&log_directory)?;
    Ok(PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_directory.display().to_string(),
        labels: HashMap::from([("bench".into(), name.into())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
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
    })
}

/// One `sleep 3600` container from busybox.
pub fn sleeper(image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "sleep".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "sleep/0.log".into(),
        ..Default::default()
    }
}

pub async fn run_pod(c: &mut Client, config: &PodSandboxConfig) -> Result<String> {
    Ok(c.runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id)
}

/// CreateContainer + StartContainer; returns the container id.
pub async fn start_container(
    c: &mut Client,
    pod: &str,
    pod_config: &PodSandboxConfig,
    config: &ContainerConfig,
) -> Result<String> {
    let id = c
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        })
        .await?
        .into_inner()
        .container_id;
    c.runtime
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    Ok(id)
}

/// StopPodSandbox + RemovePodSandbox.
pub async fn remove_pod(c: &mut Client, pod: &str) -> Result<()> {
    c.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await?;
    c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await?;
    Ok(())
}
