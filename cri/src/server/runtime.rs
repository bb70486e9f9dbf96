//! The CRI RuntimeService.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::info;

use super::{Berth, ResponseStream, internal, unimplemented};
use crate::api::runtime_service_server::RuntimeService;
use crate::api::*;
use crate::config::CgroupDriver as ConfigCgroupDriver;
use crate::host::HostInfo;

/// What the CRI's `Version.runtime_api_version` must say for a v1 runtime.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The kubelet-facing API version string containerd and CRI-O report in `Version.version`.
const KUBELET_API_VERSION: &str = "0.1.0";

const PODS: &str = "pod sandboxes (namespaces, cgroups, networking)";
const CONTAINERS: &str = "containers (OCI runtime, monitor, logs)";
const STREAMING: &str = "the exec/attach/port-forward streaming server";
const STATS: &str = "container and pod statistics";

pub struct RuntimeServer {
    berth: Arc<Berth>,
}

impl RuntimeServer {
    pub fn new(berth: Arc<Berth>) -> Self {
        RuntimeServer { berth }
    }
}

#[tonic::async_trait]
impl RuntimeService for RuntimeServer {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: KUBELET_API_VERSION.into(),
            runtime_name: "berth".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let config = &self.berth.config;
        let host = tokio::task::spawn_blocking({
            let config = config.clone();
            move || HostInfo::probe(&config)
        })
        .await
        .map_err(internal)?;
        let conditions = vec![runtime_condition(&host), network_condition(&host)];
        let mut info = HashMap::new();
        if req.get_ref().verbose {
            info.insert(
                "config".into(),
                serde_json::to_string(config).map_err(internal)?,
            );
            info.insert(
                "host".into(),
                serde_json::to_string(&host).map_err(internal)?,
            );
            info.insert("podCIDR".into(), self.berth.pod_cidr());
        }
        let runtime_handlers = config
            .runtimes
            .keys()
            .map(|name| crate::api::RuntimeHandler {
                name: name.clone(),
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            })
            .collect();
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info,
            runtime_handlers,
            features: Some(RuntimeFeatures {
                supplemental_groups_policy: false,
                user_namespaces_host_network: false,
            }),
        }))
    }

    async fn runtime_config(
        &self,
        _: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        let cgroup_driver = match self.berth.config.cgroup_driver {
            ConfigCgroupDriver::Cgroupfs => CgroupDriver::Cgroupfs,
            ConfigCgroupDriver::Systemd => CgroupDriver::Systemd,
        };
        Ok(Response::new(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: cgroup_driver as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            for part in cidr.split(',') {
                if !is_cidr(part.trim()) {
                    return Err(Status::invalid_argument(format!(
                        "pod_cidr {cidr:?}: {part:?} is not an address/prefix such as 10.88.0.0/16"
                    )));
                }
            }
            info!(pod_cidr = %cidr, "pod CIDR updated");
            self.berth.set_pod_cidr(&cidr).map_err(internal)?;
        }
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    type StreamPodSandboxesStream = ResponseStream<StreamPodSandboxesResponse>;
    type StreamContainersStream = ResponseStream<StreamContainersResponse>;
    type StreamContainerStatsStream = ResponseStream<StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = ResponseStream<StreamPodSandboxStatsResponse>;
    type StreamPodSandboxMetricsStream = ResponseStream<StreamPodSandboxMetricsResponse>;
    type GetContainerEventsStream = ResponseStream<ContainerEventResponse>;

    async fn stream_pod_sandboxes(
        &self,
        _: Request<StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        Err(unimplemented("StreamPodSandboxes", PODS))
    }

    async fn stream_containers(
        &self,
        _: Request<StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        Err(unimplemented("StreamContainers", CONTAINERS))
    }

    async fn stream_container_stats(
        &self,
        _: Request<StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        Err(unimplemented("StreamContainerStats", STATS))
    }

    async fn stream_pod_sandbox_stats(
        &self,
        _: Request<StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        Err(unimplemented("StreamPodSandboxStats", STATS))
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _: Request<StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        Err(unimplemented("StreamPodSandboxMetrics", STATS))
    }

    async fn get_container_events(
        &self,
        _: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(unimplemented("GetContainerEvents", CONTAINERS))
    }

    async fn run_pod_sandbox(
        &self,
        _: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        Err(unimplemented("RunPodSandbox", PODS))
    }

    async fn stop_pod_sandbox(
        &self,
        _: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        Err(unimplemented("StopPodSandbox", PODS))
    }

    async fn remove_pod_sandbox(
        &self,
        _: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        Err(unimplemented("RemovePodSandbox", PODS))
    }

    async fn pod_sandbox_status(
        &self,
        _: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        Err(unimplemented("PodSandboxStatus", PODS))
    }

    async fn list_pod_sandbox(
        &self,
        _: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        Err(unimplemented("ListPodSandbox", PODS))
    }

    async fn update_pod_sandbox_resources(
        &self,
        _: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<UpdatePodSandboxResourcesResponse>, Status> {
        Err(unimplemented("UpdatePodSandboxResources", PODS))
    }

    async fn create_container(
        &self,
        _: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        Err(unimplemented("CreateContainer", CONTAINERS))
    }

    async fn start_container(
        &self,
        _: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        Err(unimplemented("StartContainer", CONTAINERS))
    }

    async fn stop_container(
        &self,
        _: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        Err(unimplemented("StopContainer", CONTAINERS))
    }

    async fn remove_container(
        &self,
        _: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        Err(unimplemented("RemoveContainer", CONTAINERS))
    }

    async fn list_containers(
        &self,
        _: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        Err(unimplemented("ListContainers", CONTAINERS))
    }

    async fn container_status(
        &self,
        _: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        Err(unimplemented("ContainerStatus", CONTAINERS))
    }

    async fn update_container_resources(
        &self,
        _: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        Err(unimplemented("UpdateContainerResources", CONTAINERS))
    }

    async fn reopen_container_log(
        &self,
        _: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        Err(unimplemented("ReopenContainerLog", CONTAINERS))
    }

    async fn exec_sync(
        &self,
        _: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        Err(unimplemented("ExecSync", CONTAINERS))
    }

    async fn checkpoint_container(
        &self,
        _: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        Err(unimplemented(
            "CheckpointContainer",
            "container checkpoint/restore (CRIU)",
        ))
    }

    async fn exec(&self, _: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        Err(unimplemented("Exec", STREAMING))
    }

    async fn attach(&self, _: Request<AttachRequest>) -> Result<Response<AttachResponse>, Status> {
        Err(unimplemented("Attach", STREAMING))
    }

    async fn port_forward(
        &self,
        _: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        Err(unimplemented("PortForward", STREAMING))
    }

    async fn container_stats(
        &self,
        _: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        Err(unimplemented("ContainerStats", STATS))
    }

    async fn list_container_stats(
        &self,
        _: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        Err(unimplemented("ListContainerStats", STATS))
    }

    async fn pod_sandbox_stats(
        &self,
        _: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        Err(unimplemented("PodSandboxStats", STATS))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        Err(unimplemented("ListPodSandboxStats", STATS))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        Err(unimplemented("ListMetricDescriptors", STATS))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        Err(unimplemented("ListPodSandboxMetrics", STATS))
    }
}

/// Ready when the storage driver, cgroups and default runtime handler this config needs are all present.
fn runtime_condition(host: &HostInfo) -> RuntimeCondition {
    let blocking: Vec<&str> = host
        .missing
        .iter()
        .filter(|m| m.blocks_runtime())
        .map(|m| m.message.as_str())
        .collect();
    RuntimeCondition {
        r#type: "RuntimeReady".into(),
        status: blocking.is_empty(),
        reason: if blocking.is_empty() {
            String::new()
        } else {
            "RuntimePrerequisitesMissing".into()
        },
        message: blocking.join("; "),
    }
}

/// Ready when a CNI network config is present; otherwise says where none was found.
fn network_condition(host: &HostInfo) -> RuntimeCondition {
    let ready = host.network.config_file.is_some();
    RuntimeCondition {
        r#type: "NetworkReady".into(),
        status: ready,
        reason: if ready {
            String::new()
        } else {
            "NetworkPluginNotReady".into()
        },
        message: if ready {
            String::new()
        } else {
            format!(
                "Network plugin returns error: no CNI network config found in {}",
                host.network.conf_dir.display()
            )
        },
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    match (addr.parse::<std::net::IpAddr>(), prefix.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(p)) => p <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(p)) => p <= 128,
        _ => false,
    }
}
