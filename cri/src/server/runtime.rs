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

const STREAMING: &str = "the exec/attach/port-forward streaming server";

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
        req: Request<StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let items = self.berth.list_pods(req.into_inner().filter)?;
        Ok(Response::new(pages(items, |pod_sandboxes| {
            StreamPodSandboxesResponse { pod_sandboxes }
        })))
    }

    async fn stream_containers(
        &self,
        req: Request<StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let items = self.berth.list_containers(req.into_inner().filter).await?;
        Ok(Response::new(pages(items, |containers| {
            StreamContainersResponse { containers }
        })))
    }

    async fn stream_container_stats(
        &self,
        req: Request<StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let items = self
            .berth
            .list_container_stats(req.into_inner().filter)
            .await?;
        Ok(Response::new(pages(items, |container_stats| {
            StreamContainerStatsResponse { container_stats }
        })))
    }

    async fn stream_pod_sandbox_stats(
        &self,
        req: Request<StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let items = self
            .berth
            .list_pod_sandbox_stats(req.into_inner().filter)
            .await?;
        Ok(Response::new(pages(items, |pod_sandbox_stats| {
            StreamPodSandboxStatsResponse { pod_sandbox_stats }
        })))
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _: Request<StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        let items = self.berth.list_pod_sandbox_metrics().await?;
        Ok(Response::new(pages(items, |pod_sandbox_metrics| {
            StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            }
        })))
    }

    async fn get_container_events(
        &self,
        req: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let _ = req;
        use tokio_stream::StreamExt;
        let events = tokio_stream::wrappers::BroadcastStream::new(self.berth.events.subscribe())
            .map(|e| match e {
                Ok(e) => Ok(e),
                // A subscriber that fell behind is told, so it can re-list instead of trusting a gap.
                Err(e) => Err(Status::data_loss(format!("event stream lagged: {e}"))),
            });
        Ok(Response::new(Box::pin(events)))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let pod_sandbox_id = self.berth.run_pod(req.into_inner()).await?;
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        self.berth
            .stop_pod(&req.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        self.berth
            .remove_pod(&req.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let req = req.into_inner();
        Ok(Response::new(
            self.berth.pod_status(&req.pod_sandbox_id, req.verbose)?,
        ))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let items = self.berth.list_pods(req.into_inner().filter)?;
        Ok(Response::new(ListPodSandboxResponse { items }))
    }

    async fn update_pod_sandbox_resources(
        &self,
        req: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<UpdatePodSandboxResourcesResponse>, Status> {
        self.berth.update_pod_resources(req.into_inner()).await?;
        Ok(Response::new(UpdatePodSandboxResourcesResponse {}))
    }

    async fn create_container(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let container_id = self.berth.create_container(req.into_inner()).await?;
        Ok(Response::new(CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        self.berth
            .start_container(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let req = req.into_inner();
        self.berth
            .stop_container(&req.container_id, req.timeout)
            .await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        self.berth
            .remove_container(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let containers = self.berth.list_containers(req.into_inner().filter).await?;
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let req = req.into_inner();
        Ok(Response::new(
            self.berth
                .container_status(&req.container_id, req.verbose)
                .await?,
        ))
    }

    async fn update_container_resources(
        &self,
        req: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        self.berth
            .update_container_resources(req.into_inner())
            .await?;
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        self.berth
            .reopen_log(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        req: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        Ok(Response::new(self.berth.exec_sync(req.into_inner()).await?))
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
        req: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        let id = req.into_inner().container_id;
        Ok(Response::new(self.berth.container_stats(&id).await?))
    }

    async fn list_container_stats(
        &self,
        req: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let stats = self
            .berth
            .list_container_stats(req.into_inner().filter)
            .await?;
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        Ok(Response::new(self.berth.pod_sandbox_stats(&id).await?))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        let stats = self
            .berth
            .list_pod_sandbox_stats(req.into_inner().filter)
            .await?;
        Ok(Response::new(ListPodSandboxStatsResponse { stats }))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(self.berth.list_metric_descriptors()))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        let pod_metrics = self.berth.list_pod_sandbox_metrics().await?;
        Ok(Response::new(ListPodSandboxMetricsResponse { pod_metrics }))
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

/// Items per message of the Stream* list RPCs: far below gRPC's 4 MiB default message size.
const STREAM_PAGE: usize = 100;

/// A list as a stream of pages, as the Stream* twins of the List* RPCs answer.
fn pages<T: Clone + Send + 'static, R: Send + 'static>(
    items: Vec<T>,
    page: impl Fn(Vec<T>) -> R,
) -> ResponseStream<R> {
    let pages: Vec<Result<R, Status>> = items
        .chunks(STREAM_PAGE)
        .map(|c| Ok(page(c.to_vec())))
        .collect();
    Box::pin(tokio_stream::iter(pages))
}
