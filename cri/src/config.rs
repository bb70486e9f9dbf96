//! The daemon's one configuration file, `/etc/berth/config.toml`.
//!
//! Every key has a default, so an absent file means "embedded defaults"; `berth config default` prints them all.
//! Unknown keys are errors rather than warnings: a misspelt `snapshoter` silently ignored would run the wrong
//! storage driver on a node for months.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use berth_snapshotter::HostConfig;
use serde::{Deserialize, Serialize};

/// Where the daemon looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.toml";

/// The name of the built-in OCI runtime handler.
pub const BUILTIN_HANDLER: &str = "berth";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent data: content store, snapshots, metadata database.
    pub root: PathBuf,
    /// Runtime state that must not survive a reboot: pinned namespaces, monitor sockets, pod files.
    pub state: PathBuf,
    /// The CRI unix socket.
    pub socket: PathBuf,
    /// A `tracing` filter such as `info` or `berth_cri=debug,info`.
    pub log_level: String,
    /// Storage driver for container root filesystems.
    pub snapshotter: SnapshotterKind,
    /// How pod and container cgroups are named and managed.
    pub cgroup_driver: CgroupDriver,
    /// The runtime handler used when a pod names none (the CRI's empty `runtime_handler`).
    pub default_runtime: String,
    /// Images that image garbage collection by the kubelet must never remove (reported as `pinned`).
    pub pinned_images: Vec<String>,
    pub cni: CniConfig,
    pub streaming: StreamingConfig,
    /// Named runtime handlers (the CRI's RuntimeClass handlers).
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    /// Per registry host (`docker.io`, `registry.k8s.io`, `localhost:5000`): mirrors, replacement, insecurity.
    pub registries: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotterKind {
    /// Copy-on-write overlay mounts: image layers as lowerdirs, a fresh upper per container.
    Overlayfs,
    /// Plain copies, for backing filesystems where overlayfs cannot stack.
    Native,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Where network configurations (`.conflist`, `.conf`, `.json`) are read from.
    pub conf_dir: PathBuf,
    /// Where plugin executables are searched, in order.
    pub bin_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// `host:port` of the exec/attach/port-forward server; port 0 picks a free one.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// `builtin` for Berth's own runtime, or an external runc-compatible binary.
    #[serde(rename = "type")]
    pub kind: HandlerKind,
    /// The binary of an external handler; looked up in PATH when relative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    Builtin,
    Runc,
    Crun,
}

impl Default for Config {
    fn default() -> Self {
        let runtimes = BTreeMap::from([
            (
                BUILTIN_HANDLER.to_string(),
                RuntimeHandler {
                    kind: HandlerKind::Builtin,
                    path: None,
                },
            ),
            (
                "runc".to_string(),
                RuntimeHandler {
                    kind: HandlerKind::Runc,
                    path: Some("runc".into()),
                },
            ),
            (
                "crun".to_string(),
                RuntimeHandler {
                    kind: HandlerKind::Crun,
                    path: Some("crun".into()),
                },
            ),
        ]);
        Config {
            root: "/var/lib/berth".into(),
            state: "/run/berth".into(),
            socket: "/run/berth/berth.sock".into(),
            log_level: "info".into(),
            snapshotter: SnapshotterKind::Overlayfs,
            cgroup_driver: CgroupDriver::Cgroupfs,
            default_runtime: BUILTIN_HANDLER.into(),
            pinned_images: Vec::new(),
            cni: CniConfig::default(),
            streaming: StreamingConfig::default(),
            runtimes,
            registries: BTreeMap::new(),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1:0".into(),
        }
    }
}

impl fmt::Display for SnapshotterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnapshotterKind::Overlayfs => "overlayfs",
            SnapshotterKind::Native => "native",
        })
    }
}

impl fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        })
    }
}

/// A config that could not be used; the message names the file, and the key and line when the parser knows them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Loads `path`. A missing file is only acceptable at the default location, where it means "defaults":
    /// a path the operator typed that does not exist is a mistake worth stopping for.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses and validates config text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: describe_toml_error(text, &e),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        for (key, p) in [
            ("root", &self.root),
            ("state", &self.state),
            ("socket", &self.socket),
        ] {
            if !p.is_absolute() {
                return Err(invalid(
                    key,
                    format!("{} must be an absolute path", p.display()),
                ));
            }
        }
        if !self.runtimes.contains_key(&self.default_runtime) {
            return Err(invalid(
                "default_runtime",
                format!(
                    "no runtime handler named {:?} (configured: {})",
                    self.default_runtime,
                    self.runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        for (name, h) in &self.runtimes {
            if h.kind != HandlerKind::Builtin && h.path.is_none() {
                return Err(invalid(
                    &format!("runtimes.{name}.path"),
                    "an external handler needs the path of its binary".into(),
                ));
            }
        }
        if self
            .streaming
            .address
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(invalid(
                "streaming.address",
                format!("{:?} is not an ip:port address", self.streaming.address),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(invalid("log_level", e.to_string()));
        }
        Ok(())
    }

    /// The config as TOML, every key present: what `berth config default` prints.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Registry hosts as the image store wants them.
    pub fn registry_config(&self) -> berth_snapshotter::RegistryConfig {
        berth_snapshotter::RegistryConfig {
            hosts: self
                .registries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The metadata database, one per root.
    pub fn db_path(&self) -> PathBuf {
        self.root.join("meta.db")
    }
}

/// Turns a toml error into one line naming the line, column and what was wrong, as an operator reads it.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let col = span.start
                - text[..span.start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |i| i + 1)
                + 1;
            let key = text[span.clone()].trim();
            if key.is_empty() || key.len() > 60 {
                format!("line {line}, column {col}: {message}")
            } else {
                format!("line {line}, column {col}: `{key}`: {message}")
            }
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_their_own_rendering() {
        let text = Config::default().to_toml();
        let parsed =
            Config::parse(&text, Path::new("default.toml")).expect("default config parses");
        assert_eq!(parsed, Config::default());
        for key in [
            "root",
            "state",
            "socket",
            "snapshotter",
            "cgroup_driver",
            "[cni]",
            "[streaming]",
            "[runtimes.runc]",
        ] {
            assert!(text.contains(key), "default config lacks {key}:\n{text}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse(
            "root = \"/var/lib/x\"\nsnapshoter = \"native\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("snapshoter"), "{msg}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::parse("cgroup_driver = \"cgroupv3\"\n", Path::new("c.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 1") && msg.contains("cgroupv3"), "{msg}");
    }

    #[test]
    fn relative_paths_and_unknown_default_runtime_are_refused() {
        let err = Config::parse("root = \"var/lib\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("root"), "{err}");
        let err = Config::parse("default_runtime = \"kata\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("kata"), "{err}");
    }

    #[test]
    fn registry_hosts_parse() {
        let c = Config::parse(
            "[registries.\"docker.io\"]\nserver = \"http://127.0.0.1:5000\"\n[registries.\"quay.io\"]\nmirrors = [\"https://m.example\"]\ninsecure = true\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.registries["docker.io"].server.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert!(c.registries["quay.io"].insecure);
    }
}
