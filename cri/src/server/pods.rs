//! Pod sandbox RPCs: validate, delegate to [`crate::pod`], and map its errors to status codes.

use tonic::Status;
use tracing::{info, warn};

use super::{Berth, internal};
use crate::api::*;
use crate::pod::{self, PODS, PodEnv, PodError, PodRecord, PodState};

pub(crate) fn pod_error(e: PodError) -> Status {
    match e {
        PodError::InvalidArgument(m) => Status::invalid_argument(m),
        PodError::NotFound(id) => Status::not_found(format!("pod sandbox {id} not found")),
        PodError::AlreadyExists(m) => Status::already_exists(m),
        PodError::Unimplemented(m) => Status::unimplemented(m),
        PodError::Failed(m) => Status::internal(m),
        PodError::Store(e) => internal(e),
    }
}

impl Berth {
    /// The pod `id` names (exactly or by unique prefix).
    pub(crate) fn find_pod(&self, id: &str) -> Result<Option<PodRecord>, Status> {
        // The kubelet always sends full ids: one keyed read, not a scan of every pod.
        if let Some(pod) = self.store.get::<PodRecord>(PODS, id).map_err(internal)? {
            return Ok(Some(pod));
        }
        let pods = self.store.list::<PodRecord>(PODS).map_err(internal)?;
        match crate::ids::resolve(id, pods.iter().map(|(k, _)| k.as_str())) {
            Ok(found) => Ok(pods
                .iter()
                .find(|(k, _)| k == found)
                .map(|(_, p)| p.clone())),
            Err(0) => Ok(None),
            Err(n) => Err(Status::invalid_argument(format!(
                "pod id prefix {id:?} is ambiguous ({n} pods match)"
            ))),
        }
    }

    pub(crate) async fn run_pod(&self, req: RunPodSandboxRequest) -> Result<String, Status> {
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("RunPodSandbox: config is required"))?;
        let handler = if req.runtime_handler.is_empty() {
            self.config.default_runtime.clone()
        } else {
            req.runtime_handler.clone()
        };
        if !self.config.runtimes.contains_key(&handler) {
            return Err(Status::invalid_argument(format!(
                "runtime handler {handler:?} is not configured (configured: {})",
                self.config
                    .runtimes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let id = crate::ids::new_id();
        let env_state = self.config.state.clone();
        let store = self.store.clone();
        let bin_dir = self.bin_dir.clone();
        let pod_id = id.clone();
        let cfg = config.clone();
        let record = tokio::task::spawn_blocking(move || {
            let env = PodEnv {
                store: &store,
                state_dir: &env_state,
                bin_dir: &bin_dir,
            };
            pod::create(&env, &pod_id, &cfg, &handler)
        })
        .await
        .map_err(internal)?
        .map_err(pod_error)?;

        let mut ips = Vec::new();
        if !record.host_network {
            let net = self.pod_network(&record);
            match self.cni.add(&net).await {
                Ok(result) => {
                    let mut found = result.sandbox_ips();
                    // IPv4 first: the kubelet takes the first as the pod's primary IP.
                    found.sort_by_key(|n| n.addr.is_ipv6());
                    ips = found.iter().map(|n| n.addr.to_string()).collect();
                }
                Err(e) => {
                    if let Err(del) = self.cni.del(&net).await {
                        warn!(pod = %id, error = %del, "releasing a half-set-up pod network");
                    }
                    let (store, state) = (self.store.clone(), self.config.state.clone());
                    let pid = id.clone();
                    let _ = tokio::task::spawn_blocking(move || pod::abandon(&store, &state, &pid))
                        .await;
                    return Err(Status::internal(format!("setting up the pod network: {e}")));
                }
            }
        }
        let (store, state) = (self.store.clone(), self.config.state.clone());
        tokio::task::spawn_blocking(move || pod::finish(&store, &state, record, ips))
            .await
            .map_err(internal)?
            .map_err(pod_error)?;
        self.events
            .pod(&id, ContainerEventType::ContainerCreatedEvent);
        self.events
            .pod(&id, ContainerEventType::ContainerStartedEvent);
        Ok(id)
    }

    /// What the CNI plugins are told about a pod (also what DEL needs to find its cached ADD).
    fn pod_network(&self, pod: &PodRecord) -> berth_cni::client::PodNetwork {
        let config = pod.config();
        let meta = config.metadata.clone().unwrap_or_default();
        let port_mappings = config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| berth_cni::client::PortMapping {
                host_port: p.host_port as u16,
                container_port: p.container_port as u16,
                protocol: match Protocol::try_from(p.protocol) {
                    Ok(Protocol::Udp) => "udp",
                    Ok(Protocol::Sctp) => "sctp",
                    _ => "tcp",
                }
                .into(),
                host_ip: p.host_ip.parse().ok(),
            })
            .collect();
        let dns = config
            .dns_config
            .as_ref()
            .map(|d| berth_cni::client::DnsCapability {
                servers: d.servers.clone(),
                searches: d.searches.clone(),
                options: d.options.clone(),
            });
        berth_cni::client::PodNetwork {
            id: pod.id.clone(),
            netns: pod::PodPaths::new(&self.config.state, &pod.id).ns("net"),
            ifname: "eth0".into(),
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            port_mappings,
            dns,
            ..Default::default()
        }
    }

    /// Stops every container of the pod, then releases its namespaces. Unknown ids succeed (idempotent).
    pub(crate) async fn stop_pod(&self, id: &str) -> Result<(), Status> {
        let Some(mut pod) = self.find_pod(id)? else {
            return Ok(());
        };
        for c in self.containers_of(&pod.id)? {
            self.stop_container(&c.id, 0).await?;
        }
        if !pod.host_network {
            self.cni
                .del(&self.pod_network(&pod))
                .await
                .map_err(|e| Status::internal(format!("tearing down the pod network: {e}")))?;
        }
        let state = self.config.state.clone();
        let pid = pod.id.clone();
        tokio::task::spawn_blocking(move || pod::release_namespaces(&state, &pid))
            .await
            .map_err(internal)?
            .map_err(pod_error)?;
        if pod.state != PodState::NotReady {
            pod.state = PodState::NotReady;
            self.store.put(PODS, &pod.id, &pod).map_err(internal)?;
            self.events
                .pod(&pod.id, ContainerEventType::ContainerStoppedEvent);
            info!(pod = %pod.id, "pod sandbox stopped");
        }
        Ok(())
    }

    /// Removes the pod's containers, files and record. Unknown ids succeed (idempotent).
    pub(crate) async fn remove_pod(&self, id: &str) -> Result<(), Status> {
        let Some(pod) = self.find_pod(id)? else {
            return Ok(());
        };
        for c in self.containers_of(&pod.id)? {
            self.remove_container(&c.id).await?;
        }
        if !pod.host_network {
            // Idempotent: a stopped pod's network is already gone.
            self.cni
                .del(&self.pod_network(&pod))
                .await
                .map_err(|e| Status::internal(format!("tearing down the pod network: {e}")))?;
        }
        let state = self.config.state.clone();
        let record = pod.clone();
        tokio::task::spawn_blocking(move || {
            pod::teardown(&state, &record.id)?;
            pod::remove_own_cgroup(&record)
        })
        .await
        .map_err(internal)?
        .map_err(pod_error)?;
        self.store.delete(PODS, &pod.id).map_err(internal)?;
        self.events
            .pod(&pod.id, ContainerEventType::ContainerDeletedEvent);
        info!(pod = %pod.id, "pod sandbox removed");
        Ok(())
    }

    pub(crate) fn pod_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse, Status> {
        let pod = self
            .find_pod(id)?
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id} not found")))?;
        let config = pod.config();
        let ns = |host: bool| if host { NamespaceMode::Node } else { NamespaceMode::Pod } as i32;
        let mut ips = pod.ips.iter();
        let status = PodSandboxStatus {
            id: pod.id.clone(),
            metadata: config.metadata.clone(),
            state: cri_pod_state(pod.state) as i32,
            created_at: pod.created_at,
            network: Some(PodSandboxNetworkStatus {
                ip: ips.next().cloned().unwrap_or_default(),
                additional_ips: ips.map(|ip| PodIp { ip: ip.clone() }).collect(),
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(NamespaceOption {
                        network: ns(pod.host_network),
                        pid: if pod.host_pid {
                            NamespaceMode::Node
                        } else if pod.shared_pid {
                            NamespaceMode::Pod
                        } else {
                            NamespaceMode::Container
                        } as i32,
                        ipc: ns(pod.host_ipc),
                        ..Default::default()
                    }),
                }),
            }),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            runtime_handler: pod.runtime_handler.clone(),
        };
        let mut info = std::collections::HashMap::new();
        if verbose {
            let paths = pod::PodPaths::new(&self.config.state, &pod.id);
            let v = serde_json::json!({
                "id": pod.id,
                "state": pod.state,
                "hostname": pod.hostname,
                "cgroupParent": pod.cgroup_parent,
                "runtimeHandler": pod.runtime_handler,
                "stateDir": paths.dir,
                "netns": (!pod.host_network).then(|| paths.ns("net")),
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses: Vec::new(),
            timestamp: pod::now_nanos(),
        })
    }

    pub(crate) fn list_pods(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> Result<Vec<PodSandbox>, Status> {
        let filter = filter.unwrap_or_default();
        let pods = self.store.list::<PodRecord>(PODS).map_err(internal)?;
        Ok(pods
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| p.state != PodState::Creating)
            .filter(|p| filter.id.is_empty() || p.id.starts_with(&filter.id))
            .filter(|p| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|s| s.state == cri_pod_state(p.state) as i32)
            })
            .filter_map(|p| {
                let config = p.config();
                pod::labels_match(&config.labels, &filter.label_selector).then(|| PodSandbox {
                    id: p.id.clone(),
                    metadata: config.metadata,
                    state: cri_pod_state(p.state) as i32,
                    created_at: p.created_at,
                    labels: config.labels,
                    annotations: config.annotations,
                    runtime_handler: p.runtime_handler,
                })
            })
            .collect())
    }

    /// Start-up: undo pods whose creation a crash interrupted, network first.
    pub(crate) async fn recover_pods(&self) -> Result<(), Status> {
        for (id, p) in self.store.list::<PodRecord>(PODS).map_err(internal)? {
            if p.state != PodState::Creating {
                continue;
            }
            warn!(pod = %id, "undoing a pod sandbox whose creation was interrupted");
            if !p.host_network
                && let Err(e) = self.cni.del(&self.pod_network(&p)).await
            {
                warn!(pod = %id, error = %e, "releasing the network of an interrupted pod");
            }
            let (store, state) = (self.store.clone(), self.config.state.clone());
            tokio::task::spawn_blocking(move || pod::abandon(&store, &state, &id))
                .await
                .map_err(internal)?;
        }
        Ok(())
    }
}

fn cri_pod_state(s: PodState) -> PodSandboxState {
    match s {
        PodState::Ready => PodSandboxState::SandboxReady,
        PodState::Creating | PodState::NotReady => PodSandboxState::SandboxNotready,
    }
}

impl Berth {
    /// Applies pod-level limits (resources plus overhead) to the pod's cgroup, which its containers sit under.
    pub(crate) async fn update_pod_resources(
        &self,
        req: UpdatePodSandboxResourcesRequest,
    ) -> Result<(), Status> {
        let pod = self.find_pod(&req.pod_sandbox_id)?.ok_or_else(|| {
            Status::not_found(format!("pod sandbox {} not found", req.pod_sandbox_id))
        })?;
        let Some(mut total) = req.resources else {
            return Ok(());
        };
        if let Some(o) = req.overhead {
            total.cpu_quota += o.cpu_quota;
            total.cpu_shares += o.cpu_shares;
            if total.memory_limit_in_bytes > 0 {
                total.memory_limit_in_bytes += o.memory_limit_in_bytes;
            }
        }
        let res = crate::spec::linux_resources(Some(&total));
        let parent = pod.cgroup_parent.clone();
        tokio::task::spawn_blocking(move || -> Result<(), berth_runtime::Error> {
            let layout = berth_runtime::cgroups::Layout::detect()?;
            let cg =
                berth_runtime::cgroups::Cgroup::create(&layout, std::path::Path::new(&parent))?;
            Ok(cg.apply(&res)?)
        })
        .await
        .map_err(internal)?
        .map_err(super::containers::runtime_error)?;
        info!(pod = %pod.id, "pod resources updated");
        Ok(())
    }
}
