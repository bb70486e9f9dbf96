//! Containers: the record that survives daemon restarts, and the bundle a runtime handler runs.
//!
//! A container's life: a record marked `creating` -> a copy-on-write rootfs mounted at
//! `<state>/bundles/<id>/rootfs` -> `config.json` built from the CRI and image configs -> the handler's monitor
//! and runtime `create` -> `created`. Start, stop and exit live in the runtime's state dir (the monitor's status
//! file), not here, so they stay true while the daemon is down. A record still `creating` at start-up was cut off
//! by a crash and is undone by [`recover`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::api::ContainerConfig;
use crate::store::Table;

pub const CONTAINERS: Table = Table("containers");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Creating,
    Created,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub state: ContainerState,
    pub created_at: i64,
    /// The image as the request named it (`ContainerStatus.image`).
    pub image_ref: String,
    /// The image id (config digest), as the ImageService reports it.
    pub image_id: String,
    /// A repo digest of the image, when it has one (`ContainerStatus.image_ref`).
    pub image_digest: String,
    /// Absolute CRI log path, or empty when the kubelet gave no log directory.
    pub log_path: PathBuf,
    pub handler: String,
    pub stop_signal: i32,
    pub uid: i64,
    pub gid: i64,
    pub supplemental_groups: Vec<i64>,
    #[serde(with = "crate::pod::b64")]
    pub config: Vec<u8>,
}

impl ContainerRecord {
    pub fn config(&self) -> ContainerConfig {
        ContainerConfig::decode(self.config.as_slice()).unwrap_or_default()
    }

    /// `(name, attempt)`: unique within a pod.
    pub fn name(&self) -> (String, u32) {
        self.config()
            .metadata
            .map(|m| (m.name, m.attempt))
            .unwrap_or_default()
    }
}

/// Where a container's bundle lives.
pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    pub fn new(state: &Path, id: &str) -> Bundle {
        Bundle {
            dir: state.join("bundles").join(id),
        }
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
}

/// The handlers of the configured runtime classes, by name.
pub struct Runtimes {
    handlers: std::collections::BTreeMap<String, Arc<dyn berth_runtime::handler::Handler>>,
}

impl Runtimes {
    pub fn new(config: &crate::config::Config, bin_dir: &Path) -> Runtimes {
        use berth_runtime::handler::{HandlerConfig, OciHandler};
        let systemd = config.cgroup_driver == crate::config::CgroupDriver::Systemd;
        let handlers = config
            .runtimes
            .iter()
            .map(|(name, h)| {
                let mut cfg = match h.kind {
                    crate::config::HandlerKind::Builtin => {
                        let mut c = HandlerConfig::builtin(bin_dir, &config.state);
                        c.name = name.clone();
                        c
                    }
                    _ => {
                        let path = h.path.clone().unwrap_or_else(|| name.into());
                        let binary = crate::host::find_executable(&path).unwrap_or(path);
                        HandlerConfig::external(
                            name,
                            &binary,
                            &bin_dir.join("berth-monitor"),
                            &config.state,
                        )
                    }
                };
                cfg.systemd_cgroup = systemd;
                let handler: Arc<dyn berth_runtime::handler::Handler> =
                    Arc::new(OciHandler::new(cfg));
                (name.clone(), handler)
            })
            .collect();
        Runtimes { handlers }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn berth_runtime::handler::Handler>> {
        self.handlers.get(name).cloned()
    }
}
