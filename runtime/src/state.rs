//! The per-container state directory of the built-in runtime (`--root/<id>/`), like runc's.
//!
//! `state.json` holds what later commands need without the bundle: the init's PID paired with its start time (PIDs
//! are reused quickly here), the cgroup directories and the namespaces to join for exec. `exec.fifo` exists while the
//! container is `created`: init blocks opening it for writing until `start` opens it for reading.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};
use crate::util;

/// Name of the fifo init waits on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
/// Name of the state file.
pub const STATE_FILE: &str = "state.json";

/// OCI lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the built-in runtime remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot: with `pid`, the identity of init.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// Cgroup directories, one per mounted hierarchy.
    pub cgroup_dirs: Vec<PathBuf>,
    /// True when the cgroup is on the unified (v2-only) hierarchy.
    pub cgroup_v2: bool,
    /// Namespace kinds (`/proc/PID/ns/<kind>` names) the container has apart from the host's; exec joins these.
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
}

/// Validate a container id so it is safe as a path component.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()).into())
    }
}

/// The directory of container `id` under `root`.
pub fn dir(root: &Path, id: &str) -> Result<PathBuf> {
    validate_id(id)?;
    Ok(root.join(id))
}

impl ContainerState {
    /// Load the state of `id`; NotFound if there is none.
    pub fn load(root: &Path, id: &str) -> Result<Self> {
        let path = dir(root, id)?.join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()).into());
            }
            Err(source) => {
                return Err(StateError::Io {
                    what: "read",
                    path,
                    source,
                }
                .into());
            }
        };
        serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { path, source }.into())
    }

    /// Save atomically.
    pub fn save(&self, root: &Path) -> Result<()> {
        let path = dir(root, &self.id)?.join(STATE_FILE);
        let data = serde_json::to_vec(self).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        util::write_atomic(&path, &data).map_err(|source| {
            StateError::Io {
                what: "write",
                path,
                source,
            }
            .into()
        })
    }

    /// A pidfd on init if it is still the same process.
    pub fn init_pidfd(&self) -> Option<OwnedFd> {
        util::pidfd_for(self.pid, self.pid_start).ok().flatten()
    }

    /// Current status, from init's liveness and the fifo's presence.
    pub fn status(&self, root: &Path) -> Status {
        if self.init_pidfd().is_none() {
            return Status::Stopped;
        }
        match dir(root, &self.id) {
            Ok(d) if d.join(EXEC_FIFO).exists() => Status::Created,
            _ => {
                let frozen = crate::cgroups::Layout::detect()
                    .map(|l| crate::cgroups::Cgroup::from_dirs(&l, &self.cgroup_dirs).is_frozen())
                    .unwrap_or(false);
                if frozen {
                    Status::Paused
                } else {
                    Status::Running
                }
            }
        }
    }

    /// The OCI state document (as `runc state` prints it and hooks read it on stdin).
    pub fn oci_state(&self, status: Status) -> serde_json::Value {
        let pid = if status == Status::Stopped {
            0
        } else {
            self.pid
        };
        serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.id,
            "pid": pid,
            "status": status.to_string(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": self.annotations,
        })
    }
}

/// List container ids under `root`.
pub fn list(root: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(root) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_path_safe() {
        assert!(validate_id("abc-1_2.3").is_ok());
        for bad in ["", "..", ".x", "a/b", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
