//! Container RPCs: create (rootfs + spec + runtime create), start, stop, remove, status, list, exec_sync.

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::handler::{ContainerSpec, Handler, Phase};
use tonic::Status;
use tracing::{info, warn};

use super::{Berth, image_error, internal};
use crate::api::*;
use crate::container::{Bundle, CONTAINERS, ContainerRecord, ContainerState as RecState};
use crate::pod::{PodPaths, PodRecord, PodState};

/// ExecSync output beyond this is cut, as the kubelet caps probe output (16 MiB per stream).
const EXEC_OUTPUT_CAP: usize = 16 << 20;

pub(crate) fn runtime_error(e: berth_runtime::Error) -> Status {
    use berth_runtime::Error as E;
    use berth_runtime::error::StateError;
    match e {
        E::State(StateError::NotFound(id)) => {
            Status::not_found(format!("container {id} not found in the runtime"))
        }
        E::State(StateError::InvalidId(m)) => Status::invalid_argument(m),
        E::State(StateError::WrongStatus { .. }) => Status::failed_precondition(e.to_string()),
        E::Spec(_) => Status::invalid_argument(e.to_string()),
        E::NotSupported(m) => Status::unimplemented(m),
        E::Timeout(m) => Status::deadline_exceeded(m),
        other => Status::internal(other.to_string()),
    }
}

fn blocking_err(e: tokio::task::JoinError) -> Status {
    internal(e)
}

impl Berth {
    pub(crate) fn find_container(&self, id: &str) -> Result<Option<ContainerRecord>, Status> {
        // The kubelet always sends full ids: one keyed read, not a scan of every container.
        if let Some(c) = self
            .store
            .get::<ContainerRecord>(CONTAINERS, id)
            .map_err(internal)?
        {
            return Ok(Some(c));
        }
        let all = self
            .store
            .list::<ContainerRecord>(CONTAINERS)
            .map_err(internal)?;
        match crate::ids::resolve(id, all.iter().map(|(k, _)| k.as_str())) {
            Ok(found) => Ok(all.iter().find(|(k, _)| k == found).map(|(_, c)| c.clone())),
            Err(0) => Ok(None),
            Err(n) => Err(Status::invalid_argument(format!(
                "container id prefix {id:?} is ambiguous ({n} match)"
            ))),
        }
    }

    fn container(&self, id: &str) -> Result<ContainerRecord, Status> {
        self.find_container(id)?
            .ok_or_else(|| Status::not_found(format!("container {id} not found")))
    }

    pub(crate) fn containers_of(&self, pod_id: &str) -> Result<Vec<ContainerRecord>, Status> {
        Ok(self
            .store
            .list::<ContainerRecord>(CONTAINERS)
            .map_err(internal)?
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| c.pod_id == pod_id)
            .collect())
    }

    fn handler(&self, name: &str) -> Result<Arc<dyn Handler>, Status> {
        self.runtimes.get(name).ok_or_else(|| {
            Status::failed_precondition(format!("runtime handler {name:?} is no longer configured"))
        })
    }

    pub(crate) async fn create_container(
        &self,
        req: CreateContainerRequest,
    ) -> Result<String, Status> {
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("CreateContainer: config is required"))?;
        let meta = config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| {
                Status::invalid_argument("CreateContainer: config.metadata.name is required")
            })?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| {
                Status::invalid_argument("CreateContainer: config.image.image is required")
            })?;
        let pod = self.find_pod(&req.pod_sandbox_id)?.ok_or_else(|| {
            Status::not_found(format!("pod sandbox {} not found", req.pod_sandbox_id))
        })?;
        if pod.state != PodState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        if let Some(other) = self
            .containers_of(&pod.id)?
            .into_iter()
            .find(|c| c.name() == (meta.name.clone(), meta.attempt))
        {
            return Err(Status::already_exists(format!(
                "container {:?} (attempt {}) already exists in pod {} as {}",
                meta.name, meta.attempt, pod.id, other.id
            )));
        }
        let image = self.images.get(&image_name).map_err(|e| {
            if e.is_not_found() {
                Status::not_found(format!("image {image_name:?} not found: pull it first"))
            } else {
                image_error(e)
            }
        })?;
        let handler = self.handler(&pod.runtime_handler)?;
        let id = crate::ids::new_id();
        let record = ContainerRecord {
            id: id.clone(),
            pod_id: pod.id.clone(),
            state: RecState::Creating,
            created_at: crate::pod::now_nanos(),
            image_ref: image_name.clone(),
            image_id: image.id.clone(),
            image_digest: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            log_path: log_path(&pod, &config),
            handler: pod.runtime_handler.clone(),
            stop_signal: 0,
            uid: 0,
            gid: 0,
            supplemental_groups: Vec::new(),
            config: prost::Message::encode_to_vec(&config),
        };
        self.store.put(CONTAINERS, &id, &record).map_err(internal)?;
        let berth = self.self_arc();
        let result = tokio::task::spawn_blocking(move || {
            berth.build_container(record, pod, image, config, handler)
        })
        .await
        .map_err(blocking_err)?;
        match result {
            Ok(()) => {
                self.events
                    .container(&id, ContainerEventType::ContainerCreatedEvent);
                info!(container = %id, pod = %req.pod_sandbox_id, name = %meta.name, "container created");
                Ok(id)
            }
            Err(e) => {
                self.undo_container(&id).await;
                Err(e)
            }
        }
    }

    /// Rootfs, spec and runtime create; blocking.
    fn build_container(
        &self,
        mut record: ContainerRecord,
        pod: PodRecord,
        image: berth_snapshotter::Image,
        config: ContainerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<(), Status> {
        let bundle = Bundle::new(&self.config.state, &record.id);
        std::fs::create_dir_all(bundle.rootfs()).map_err(internal)?;
        let mounts = self
            .images
            .prepare_container_rootfs(&record.id, &image)
            .map_err(image_error)?;
        berth_snapshotter::mount(&mounts, &bundle.rootfs()).map_err(image_error)?;

        let paths = PodPaths::new(&self.config.state, &pod.id);
        let pod_config = pod.config();
        let pod_ctx = crate::spec::PodContext {
            id: &pod.id,
            config: &pod_config,
            net_ns: (!pod.host_network).then(|| paths.ns("net")),
            ipc_ns: (!pod.host_ipc).then(|| paths.ns("ipc")),
            uts_ns: (!pod.host_network).then(|| paths.ns("uts")),
            pid_ns: pod.shared_pid.then(|| paths.ns("pid")),
            hostname_file: paths.hostname(),
            resolv_conf: paths.resolv_conf(),
            hosts_file: paths.hosts(),
            shm: (!pod.host_ipc).then(|| paths.shm()),
            cgroup_parent: pod.cgroup_parent.clone(),
        };
        let rootfs = bundle.rootfs();
        let ctr_ctx = crate::spec::ContainerContext {
            id: &record.id,
            config: &config,
            image: &image.config,
            rootfs: &rootfs,
            target_pid_ns: None,
        };
        let spec = crate::spec::container_spec(&pod_ctx, &ctr_ctx)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        record.stop_signal = crate::spec::stop_signal(&config, &image.config)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(user) = spec.process().as_ref().map(|p| p.user()) {
            record.uid = user.uid() as i64;
            record.gid = user.gid() as i64;
            record.supplemental_groups = user
                .additional_gids()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(i64::from)
                .collect();
        }
        let json = serde_json::to_vec_pretty(&spec).map_err(internal)?;
        std::fs::write(bundle.config(), json).map_err(internal)?;

        if let Some(dir) = record.log_path.parent()
            && !record.log_path.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(internal)?;
        }
        handler
            .create(&ContainerSpec {
                id: record.id.clone(),
                bundle: bundle.dir.clone(),
                log_path: record.log_path.clone(),
                stdin: config.stdin,
                stdin_once: config.stdin_once,
                tty: config.tty,
            })
            .map_err(runtime_error)?;
        record.state = RecState::Created;
        self.store
            .put(CONTAINERS, &record.id, &record)
            .map_err(internal)?;
        Ok(())
    }

    /// Removes whatever a failed or interrupted create left: runtime state, rootfs mount, snapshot, bundle, record.
    async fn undo_container(&self, id: &str) {
        let berth = self.self_arc();
        let id = id.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = berth.release_container(&id) {
                warn!(container = %id, error = %e.message(), "cleaning up a failed container");
            }
        })
        .await;
    }

    /// Blocking teardown shared by remove and undo; idempotent.
    fn release_container(&self, id: &str) -> Result<(), Status> {
        if let Ok(Some(rec)) = self.find_container(id)
            && let Some(h) = self.runtimes.get(&rec.handler)
        {
            h.delete(id, true).map_err(runtime_error)?;
        }
        let bundle = Bundle::new(&self.config.state, id);
        berth_snapshotter::unmount(&bundle.rootfs()).map_err(image_error)?;
        match self.images.remove_container_rootfs(id) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(image_error(e)),
        }
        match std::fs::remove_dir_all(&bundle.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(internal(e)),
        }
        self.store.delete(CONTAINERS, id).map_err(internal)?;
        Ok(())
    }

    pub(crate) async fn start_container(&self, id: &str) -> Result<(), Status> {
        let rec = self.container(id)?;
        if rec.state != RecState::Created {
            return Err(Status::failed_precondition(format!(
                "container {id} is still being created"
            )));
        }
        let handler = self.handler(&rec.handler)?;
        let state = {
            let (h, cid) = (handler.clone(), rec.id.clone());
            tokio::task::spawn_blocking(move || h.state(&cid))
                .await
                .map_err(blocking_err)?
                .map_err(runtime_error)?
        };
        if state.phase != Phase::Created {
            return Err(Status::failed_precondition(format!(
                "container {} is {:?}, not created: it can be started once",
                rec.id, state.phase
            )));
        }
        let cid = rec.id.clone();
        tokio::task::spawn_blocking(move || handler.start(&cid))
            .await
            .map_err(blocking_err)?
            .map_err(runtime_error)?;
        self.events
            .container(&rec.id, ContainerEventType::ContainerStartedEvent);
        info!(container = %rec.id, "container started");
        Ok(())
    }

    /// The stop signal, then SIGKILL once `timeout` seconds pass. Unknown ids succeed (idempotent).
    pub(crate) async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let Some(rec) = self.find_container(id)? else {
            return Ok(());
        };
        let handler = self.handler(&rec.handler)?;
        let signal = if rec.stop_signal > 0 {
            rec.stop_signal
        } else {
            libc::SIGTERM
        };
        let cid = rec.id.clone();
        let stopped = tokio::task::spawn_blocking(move || -> Result<bool, berth_runtime::Error> {
            let state = handler.state(&cid)?;
            if state.phase == Phase::Stopped {
                return Ok(false);
            }
            if state.phase == Phase::Created {
                // Never started: nothing to signal gracefully.
                handler.kill(&cid, libc::SIGKILL, true)?;
            } else if timeout > 0 {
                handler.kill(&cid, signal, false)?;
                match handler.wait(&cid, Some(Duration::from_secs(timeout as u64))) {
                    Ok(s) if s.phase == Phase::Stopped => return Ok(true),
                    Ok(_) | Err(berth_runtime::Error::Timeout(_)) => {}
                    Err(e) => return Err(e),
                }
                // Still running after the grace period (PID 1 ignores signals it has no handler for).
                handler.kill(&cid, libc::SIGKILL, true)?;
            } else {
                handler.kill(&cid, libc::SIGKILL, true)?;
            }
            handler.wait(&cid, Some(Duration::from_secs(10)))?;
            Ok(true)
        })
        .await
        .map_err(blocking_err)?
        .map_err(runtime_error)?;
        if stopped {
            self.events
                .container(&rec.id, ContainerEventType::ContainerStoppedEvent);
            info!(container = %rec.id, "container stopped");
        }
        Ok(())
    }

    /// Kills if needed and removes everything of the container. Unknown ids succeed (idempotent).
    pub(crate) async fn remove_container(&self, id: &str) -> Result<(), Status> {
        let Some(rec) = self.find_container(id)? else {
            return Ok(());
        };
        let berth = self.self_arc();
        let cid = rec.id.clone();
        tokio::task::spawn_blocking(move || berth.release_container(&cid))
            .await
            .map_err(blocking_err)??;
        self.events
            .container(&rec.id, ContainerEventType::ContainerDeletedEvent);
        info!(container = %rec.id, "container removed");
        Ok(())
    }

    fn runtime_state(&self, rec: &ContainerRecord) -> Option<berth_runtime::handler::State> {
        if rec.state == RecState::Creating {
            return None;
        }
        self.runtimes.get(&rec.handler)?.state(&rec.id).ok()
    }

    pub(crate) async fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<ContainerStatusResponse, Status> {
        let rec = self.container(id)?;
        let berth = self.self_arc();
        tokio::task::spawn_blocking(move || berth.status_of(&rec, verbose))
            .await
            .map_err(blocking_err)?
    }

    fn status_of(
        &self,
        rec: &ContainerRecord,
        verbose: bool,
    ) -> Result<ContainerStatusResponse, Status> {
        let config = rec.config();
        let state = self.runtime_state(rec);
        let (cri_state, started, finished, exit_code, reason, message) = match &state {
            None => (
                ContainerState::ContainerCreated,
                0,
                0,
                0,
                String::new(),
                String::new(),
            ),
            Some(s) => match s.phase {
                Phase::Created => (
                    ContainerState::ContainerCreated,
                    0,
                    0,
                    0,
                    String::new(),
                    String::new(),
                ),
                Phase::Running => (
                    ContainerState::ContainerRunning,
                    s.started_at as i64,
                    0,
                    0,
                    String::new(),
                    String::new(),
                ),
                Phase::Stopped => {
                    let (reason, message) = if s.oom_killed {
                        (
                            "OOMKilled",
                            "the container was killed for running out of memory".to_string(),
                        )
                    } else if s.exit_code == 0 {
                        ("Completed", String::new())
                    } else if s.exit_code == -1 {
                        (
                            "Unknown",
                            "the container's exit was not observed (its monitor is gone)"
                                .to_string(),
                        )
                    } else {
                        ("Error", String::new())
                    };
                    (
                        ContainerState::ContainerExited,
                        s.started_at as i64,
                        s.finished_at as i64,
                        s.exit_code,
                        reason.to_string(),
                        message,
                    )
                }
            },
        };
        let linux_resources = config.linux.as_ref().and_then(|l| l.resources.clone());
        let status = ContainerStatus {
            id: rec.id.clone(),
            metadata: config.metadata.clone(),
            state: cri_state as i32,
            created_at: rec.created_at,
            started_at: started,
            finished_at: finished,
            exit_code,
            image: Some(ImageSpec {
                image: rec.image_ref.clone(),
                ..Default::default()
            }),
            image_ref: rec.image_digest.clone(),
            reason,
            message,
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config.mounts.clone(),
            log_path: rec.log_path.display().to_string(),
            resources: linux_resources.map(|l| ContainerResources {
                linux: Some(l),
                windows: None,
            }),
            image_id: rec.image_id.clone(),
            user: Some(ContainerUser {
                linux: Some(LinuxContainerUser {
                    uid: rec.uid,
                    gid: rec.gid,
                    supplemental_groups: rec.supplemental_groups.clone(),
                }),
            }),
            stop_signal: cri_signal(rec.stop_signal),
        };
        let mut info = std::collections::HashMap::new();
        if verbose {
            let bundle = Bundle::new(&self.config.state, &rec.id);
            let v = serde_json::json!({
                "id": rec.id,
                "sandboxID": rec.pod_id,
                "pid": state.as_ref().map(|s| s.pid),
                "runtimeHandler": rec.handler,
                "bundle": bundle.dir,
                "runtimeSpec": std::fs::read(bundle.config()).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()),
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(ContainerStatusResponse {
            status: Some(status),
            info,
        })
    }

    pub(crate) async fn list_containers(
        &self,
        filter: Option<ContainerFilter>,
    ) -> Result<Vec<Container>, Status> {
        let berth = self.self_arc();
        tokio::task::spawn_blocking(move || berth.list_containers_blocking(filter))
            .await
            .map_err(blocking_err)?
    }

    fn list_containers_blocking(
        &self,
        filter: Option<ContainerFilter>,
    ) -> Result<Vec<Container>, Status> {
        let filter = filter.unwrap_or_default();
        let all = self
            .store
            .list::<ContainerRecord>(CONTAINERS)
            .map_err(internal)?;
        let mut out = Vec::new();
        for (_, rec) in all {
            if rec.state == RecState::Creating
                || !(filter.id.is_empty() || rec.id.starts_with(&filter.id))
                || !(filter.pod_sandbox_id.is_empty()
                    || rec.pod_id.starts_with(&filter.pod_sandbox_id))
            {
                continue;
            }
            let config = rec.config();
            if !crate::pod::labels_match(&config.labels, &filter.label_selector) {
                continue;
            }
            let state = match self.runtime_state(&rec).map(|s| s.phase) {
                Some(Phase::Running) => ContainerState::ContainerRunning,
                Some(Phase::Stopped) => ContainerState::ContainerExited,
                Some(Phase::Created) => ContainerState::ContainerCreated,
                None => ContainerState::ContainerUnknown,
            };
            if filter
                .state
                .as_ref()
                .is_some_and(|s| s.state != state as i32)
            {
                continue;
            }
            out.push(Container {
                id: rec.id.clone(),
                pod_sandbox_id: rec.pod_id.clone(),
                metadata: config.metadata,
                image: Some(ImageSpec {
                    image: rec.image_ref.clone(),
                    ..Default::default()
                }),
                image_ref: rec.image_digest.clone(),
                state: state as i32,
                created_at: rec.created_at,
                labels: config.labels,
                annotations: config.annotations,
                image_id: rec.image_id,
            });
        }
        Ok(out)
    }

    pub(crate) async fn exec_sync(&self, req: ExecSyncRequest) -> Result<ExecSyncResponse, Status> {
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("ExecSync: cmd must not be empty"));
        }
        let rec = self.container(&req.container_id)?;
        let handler = self.handler(&rec.handler)?;
        let bundle = Bundle::new(&self.config.state, &rec.id);
        let spec: oci_spec::runtime::Spec =
            serde_json::from_slice(&std::fs::read(bundle.config()).map_err(internal)?)
                .map_err(internal)?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| Status::internal("container spec has no process"))?;
        process.set_args(Some(req.cmd.clone()));
        process.set_terminal(Some(false));
        let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
        let cid = rec.id.clone();
        let out = tokio::task::spawn_blocking(move || {
            handler.exec_sync(
                &cid,
                &berth_runtime::handler::ExecRequest {
                    process,
                    stdin: None,
                    timeout,
                },
            )
        })
        .await
        .map_err(blocking_err)?
        .map_err(runtime_error)?;
        if out.timed_out {
            return Err(Status::deadline_exceeded(format!(
                "command {:?} timed out after {}s and was killed",
                req.cmd, req.timeout
            )));
        }
        let cap = |mut v: Vec<u8>| {
            v.truncate(EXEC_OUTPUT_CAP);
            v
        };
        Ok(ExecSyncResponse {
            stdout: cap(out.stdout),
            stderr: cap(out.stderr),
            exit_code: out.exit_code,
        })
    }

    pub(crate) async fn reopen_log(&self, id: &str) -> Result<(), Status> {
        let rec = self.container(id)?;
        let handler = self.handler(&rec.handler)?;
        let cid = rec.id.clone();
        tokio::task::spawn_blocking(move || -> Result<(), berth_runtime::Error> {
            let state = handler.state(&cid)?;
            if state.phase != Phase::Running {
                return Err(berth_runtime::error::StateError::WrongStatus {
                    id: cid.clone(),
                    status: format!("{:?}", state.phase).to_lowercase(),
                    action: "reopening its log",
                    need: "running",
                }
                .into());
            }
            Ok(handler.monitor(&cid)?.reopen_log()?)
        })
        .await
        .map_err(blocking_err)?
        .map_err(runtime_error)
    }

    /// Start-up: undo containers whose creation a crash interrupted.
    pub(crate) fn recover_containers(&self) -> Result<(), Status> {
        for (id, rec) in self
            .store
            .list::<ContainerRecord>(CONTAINERS)
            .map_err(internal)?
        {
            if rec.state == RecState::Creating {
                warn!(container = %id, "undoing a container whose creation was interrupted");
                self.release_container(&id)?;
            }
        }
        Ok(())
    }
}

/// `<pod log_directory>/<container log_path>`, the file the kubelet reads; empty when either is missing.
fn log_path(pod: &PodRecord, config: &ContainerConfig) -> std::path::PathBuf {
    let dir = pod.config().log_directory;
    if dir.is_empty() || config.log_path.is_empty() {
        return std::path::PathBuf::new();
    }
    std::path::Path::new(&dir).join(&config.log_path)
}

/// A Linux signal number as the CRI's Signal enum.
fn cri_signal(sig: i32) -> i32 {
    nix::sys::signal::Signal::try_from(sig)
        .ok()
        .and_then(|s| Signal::from_str_name(s.as_str()))
        .unwrap_or(Signal::RuntimeDefault) as i32
}

impl Berth {
    /// Applies new cgroup limits to a created or running container and records them for ContainerStatus.
    pub(crate) async fn update_container_resources(
        &self,
        req: UpdateContainerResourcesRequest,
    ) -> Result<(), Status> {
        let mut rec = self.container(&req.container_id)?;
        let linux = req.linux.ok_or_else(|| {
            Status::invalid_argument(
                "UpdateContainerResources: linux resources are required on Linux",
            )
        })?;
        let handler = self.handler(&rec.handler)?;
        let res = crate::spec::linux_resources(Some(&linux));
        let cid = rec.id.clone();
        tokio::task::spawn_blocking(move || handler.update_resources(&cid, &res))
            .await
            .map_err(blocking_err)?
            .map_err(runtime_error)?;
        let mut config = rec.config();
        config.linux.get_or_insert_with(Default::default).resources = Some(linux);
        rec.config = prost::Message::encode_to_vec(&config);
        self.store
            .put(CONTAINERS, &rec.id, &rec)
            .map_err(internal)?;
        info!(container = %rec.id, "container resources updated");
        Ok(())
    }
}
