//! Pod sandboxes: state dir, pinned namespaces, per-pod files, and the record that survives daemon restarts.
//!
//! There is no pause container. A pod is its pinned network, IPC and UTS namespaces (bind mounts of nsfs files
//! made by `berth-pinns`), a `/dev/shm` tmpfs, and the `hostname`, `hosts` and `resolv.conf` files its containers
//! bind-mount. Every step of [`create`] is undone if a later one fails; a record marked `creating` that a crash
//! left behind is undone at start-up by [`recover`].

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use prost::Message;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::api::{NamespaceMode, PodSandboxConfig};
use crate::store::{Store, StoreError, Table};

pub const PODS: Table = Table("pods");

/// Where a pod stands. `Creating` exists only between the first and the last step of [`create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodState {
    Creating,
    Ready,
    NotReady,
}

/// A pod as stored. The CRI config is kept whole (protobuf bytes) since containers are built from it later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub state: PodState,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub runtime_handler: String,
    pub hostname: String,
    /// The pod's cgroup: containers' cgroups are created beneath it.
    pub cgroup_parent: String,
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
    /// One PID namespace for the whole pod, with a minimal init as PID 1.
    #[serde(default)]
    pub shared_pid: bool,
    /// Pod IPs, primary first (empty until networking assigns some).
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(with = "b64")]
    pub config: Vec<u8>,
}

impl PodRecord {
    pub fn config(&self) -> PodSandboxConfig {
        PodSandboxConfig::decode(self.config.as_slice()).unwrap_or_default()
    }
}

pub(crate) mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("pod sandbox {0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Paths of one pod under the state dir.
pub struct PodPaths {
    pub dir: PathBuf,
}

impl PodPaths {
    pub fn new(state: &Path, id: &str) -> PodPaths {
        PodPaths {
            dir: state.join("pods").join(id),
        }
    }
    pub fn ns_dir(&self) -> PathBuf {
        self.dir.join("ns")
    }
    pub fn ns(&self, kind: &str) -> PathBuf {
        self.ns_dir().join(kind)
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
}

/// Size of the pod's /dev/shm, as Docker and containerd default it.
const SHM_SIZE: &str = "size=65536k";

/// What a new pod needs from the daemon.
pub struct PodEnv<'a> {
    pub store: &'a Store,
    pub state_dir: &'a Path,
    /// Directory holding `berth-pinns` (beside the `berth` binary).
    pub bin_dir: &'a Path,
}

/// Runs a pod sandbox: record (creating) -> state dir -> pinned namespaces -> files -> record (ready).
pub fn create(
    env: &PodEnv,
    id: &str,
    config: &PodSandboxConfig,
    handler: &str,
) -> Result<PodRecord, PodError> {
    let meta = config.metadata.as_ref().ok_or_else(|| {
        PodError::InvalidArgument("config.metadata is required (name, namespace, uid)".into())
    })?;
    if meta.name.is_empty() {
        return Err(PodError::InvalidArgument(
            "config.metadata.name must not be empty".into(),
        ));
    }
    let linux = config.linux.clone().unwrap_or_default();
    let ns = linux
        .security_context
        .as_ref()
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let host_network = ns.network == NamespaceMode::Node as i32;
    let host_ipc = ns.ipc == NamespaceMode::Node as i32;
    let host_pid = ns.pid == NamespaceMode::Node as i32;
    let shared_pid = ns.pid == NamespaceMode::Pod as i32;
    if ns.pid == NamespaceMode::Target as i32 {
        return Err(PodError::Unimplemented(
            "namespace_options.pid = TARGET is not implemented yet in berth".into(),
        ));
    }
    for key in linux.sysctls.keys() {
        if !berth_runtime::pinns::sysctl_is_namespaced(key) {
            return Err(PodError::InvalidArgument(format!(
                "sysctl {key} is not namespaced: a pod may set only net.*, fs.mqueue.* and IPC kernel.* sysctls"
            )));
        }
        if host_network && key.starts_with("net.") {
            return Err(PodError::InvalidArgument(format!(
                "sysctl {key} cannot be set for a host-network pod"
            )));
        }
    }
    for existing in env
        .store
        .list::<PodRecord>(PODS)?
        .into_iter()
        .map(|(_, p)| p)
    {
        if let Some(m) = existing.config().metadata
            && (
                m.name.as_str(),
                m.namespace.as_str(),
                m.uid.as_str(),
                m.attempt,
            ) == (
                meta.name.as_str(),
                meta.namespace.as_str(),
                meta.uid.as_str(),
                meta.attempt,
            )
        {
            return Err(PodError::AlreadyExists(format!(
                "pod {}/{} (uid {}, attempt {}) already exists as {}",
                m.namespace, m.name, m.uid, m.attempt, existing.id
            )));
        }
    }

    let hostname = if !config.hostname.is_empty() {
        config.hostname.clone()
    } else if host_network {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        meta.name.chars().take(63).collect()
    };
    let cgroup_parent = if linux.cgroup_parent.is_empty() {
        format!("/berth/pod-{id}")
    } else {
        linux.cgroup_parent.clone()
    };
    let record = PodRecord {
        id: id.to_string(),
        state: PodState::Creating,
        created_at: now_nanos(),
        runtime_handler: handler.to_string(),
        hostname,
        cgroup_parent,
        host_network,
        host_ipc,
        host_pid,
        shared_pid,
        ips: Vec::new(),
        config: config.encode_to_vec(),
    };
    env.store.put(PODS, id, &record)?;
    match setup(env, &record, config) {
        // Still `Creating`: the caller adds the network, then calls [`finish`].
        Ok(()) => Ok(record),
        Err(e) => {
            abandon(env.store, env.state_dir, id);
            Err(e)
        }
    }
}

/// Completes a pod once its network is up: records its IPs (and names them in /etc/hosts), marks it ready.
pub fn finish(
    store: &Store,
    state_dir: &Path,
    mut record: PodRecord,
    ips: Vec<String>,
) -> Result<PodRecord, PodError> {
    if !record.host_network && !ips.is_empty() {
        let paths = PodPaths::new(state_dir, &record.id);
        std::fs::write(paths.hosts(), hosts_file(&record.hostname, &ips))
            .map_err(|e| PodError::Failed(format!("writing hosts: {e}")))?;
    }
    record.ips = ips;
    record.state = PodState::Ready;
    store.put(PODS, &record.id, &record)?;
    let meta = record.config().metadata.unwrap_or_default();
    info!(pod = %record.id, name = %meta.name, namespace = %meta.namespace, ips = ?record.ips, "pod sandbox ready");
    Ok(record)
}

/// Undoes a pod that could not be completed: host state and record. Failures are logged, not returned: the
/// caller is already reporting the error that got us here.
pub fn abandon(store: &Store, state_dir: &Path, id: &str) {
    if let Err(e) = teardown(state_dir, id) {
        warn!(pod = id, error = %e, "undoing a failed pod left something behind");
    }
    if let Err(e) = store.delete(PODS, id) {
        warn!(pod = id, error = %e, "removing the record of a failed pod");
    }
}

fn setup(env: &PodEnv, record: &PodRecord, config: &PodSandboxConfig) -> Result<(), PodError> {
    let paths = PodPaths::new(env.state_dir, &record.id);
    let failed = |what: &str, e: std::io::Error| PodError::Failed(format!("{what}: {e}"));
    std::fs::create_dir_all(&paths.dir).map_err(|e| failed("creating the pod state dir", e))?;

    // Namespaces first: the files below describe the pod that lives in them.
    let (net, ipc, uts, pid) = (
        !record.host_network,
        !record.host_ipc,
        !record.host_network,
        record.shared_pid,
    );
    if net || ipc || uts || pid {
        let mut cmd = Command::new(env.bin_dir.join("berth-pinns"));
        cmd.arg("--dir").arg(paths.ns_dir());
        for (want, flag) in [
            (net, "--net"),
            (ipc, "--ipc"),
            (uts, "--uts"),
            (pid, "--pid"),
        ] {
            if want {
                cmd.arg(flag);
            }
        }
        if uts {
            cmd.arg("--hostname").arg(&record.hostname);
        }
        if let Some(linux) = &config.linux {
            for (k, v) in &linux.sysctls {
                cmd.arg("--sysctl").arg(format!("{k}={v}"));
            }
        }
        let out = cmd.output().map_err(|e| {
            failed(
                &format!("running {}", env.bin_dir.join("berth-pinns").display()),
                e,
            )
        })?;
        if !out.status.success() {
            return Err(PodError::Failed(format!(
                "pinning pod namespaces: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    if pid {
        adopt_pod_init(&paths, &record.cgroup_parent)?;
    }

    std::fs::write(paths.hostname(), format!("{}\n", record.hostname))
        .map_err(|e| failed("writing hostname", e))?;
    std::fs::write(paths.resolv_conf(), resolv_conf(config)?)
        .map_err(|e| failed("writing resolv.conf", e))?;
    let hosts = if record.host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        hosts_file(&record.hostname, &record.ips)
    };
    std::fs::write(paths.hosts(), hosts).map_err(|e| failed("writing hosts", e))?;

    if !record.host_ipc {
        std::fs::create_dir_all(paths.shm()).map_err(|e| failed("creating shm dir", e))?;
        mount(
            Some("shm"),
            &paths.shm(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,{SHM_SIZE}").as_str()),
        )
        .map_err(|e| failed("mounting the pod's /dev/shm", e.into()))?;
    }
    Ok(())
}

/// Moves a shared PID namespace's init into the pod cgroup, so the pod's figures and limits include it.
fn adopt_pod_init(paths: &PodPaths, cgroup_parent: &str) -> Result<(), PodError> {
    let failed = |e: &dyn std::fmt::Display| {
        PodError::Failed(format!("moving the pod init into {cgroup_parent}: {e}"))
    };
    let text = std::fs::read_to_string(paths.ns_dir().join("pid-init")).map_err(|e| failed(&e))?;
    let pid: i32 = text
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| failed(&"malformed pid-init file"))?;
    let layout = berth_runtime::cgroups::Layout::detect().map_err(|e| failed(&e))?;
    let cgroup = berth_runtime::cgroups::Cgroup::create(&layout, Path::new(cgroup_parent))
        .map_err(|e| failed(&e))?;
    cgroup.add_pid(pid).map_err(|e| failed(&e))
}

/// Releases everything a pod holds on the host: pinned namespaces, shm mount, state dir. Idempotent.
pub fn teardown(state_dir: &Path, id: &str) -> Result<(), PodError> {
    let paths = PodPaths::new(state_dir, id);
    berth_runtime::pinns::unpin(&paths.ns_dir()).map_err(|e| PodError::Failed(e.to_string()))?;
    match umount2(&paths.shm(), MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(PodError::Failed(format!(
                "unmounting {}: {e}",
                paths.shm().display()
            )));
        }
    }
    match std::fs::remove_dir_all(&paths.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PodError::Failed(format!(
            "removing {}: {e}",
            paths.dir.display()
        ))),
    }
}

/// Removes the pod's cgroup when Berth made it (no `cgroup_parent` was given); the kubelet owns the ones it names.
pub fn remove_own_cgroup(pod: &PodRecord) -> Result<(), PodError> {
    if !pod.cgroup_parent.starts_with("/berth/pod-") {
        return Ok(());
    }
    let layout =
        berth_runtime::cgroups::Layout::detect().map_err(|e| PodError::Failed(e.to_string()))?;
    berth_runtime::cgroups::Cgroup::open(&layout, Path::new(&pod.cgroup_parent))
        .destroy()
        .map_err(|e| PodError::Failed(format!("removing pod cgroup {}: {e}", pod.cgroup_parent)))
}

/// Releases the pod's namespaces (its network) but keeps the record and files, as StopPodSandbox asks.
pub fn release_namespaces(state_dir: &Path, id: &str) -> Result<(), PodError> {
    let paths = PodPaths::new(state_dir, id);
    berth_runtime::pinns::unpin(&paths.ns_dir()).map_err(|e| PodError::Failed(e.to_string()))
}

/// `/etc/resolv.conf` from the CRI's DNS config; the host's own when the kubelet gives none.
fn resolv_conf(config: &PodSandboxConfig) -> Result<String, PodError> {
    let Some(dns) = config
        .dns_config
        .as_ref()
        .filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return Ok(std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    };
    let mut out = String::new();
    for s in &dns.servers {
        if s.parse::<std::net::IpAddr>().is_err() {
            return Err(PodError::InvalidArgument(format!(
                "dns_config.servers: {s:?} is not an IP address"
            )));
        }
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(out)
}

fn hosts_file(hostname: &str, ips: &[String]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Labels match a selector when every selector key is present with the same value.
pub fn labels_match(
    labels: &std::collections::HashMap<String, String>,
    selector: &std::collections::HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DnsConfig;

    #[test]
    fn resolv_conf_follows_dns_config() {
        let config = PodSandboxConfig {
            dns_config: Some(DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&config).unwrap(),
            "nameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
        let bad = PodSandboxConfig {
            dns_config: Some(DnsConfig {
                servers: vec!["not-an-ip".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            resolv_conf(&bad),
            Err(PodError::InvalidArgument(_))
        ));
    }

    #[test]
    fn hosts_name_the_pod_ips() {
        let h = hosts_file("web-0", &["10.88.0.5".into()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.0.5\tweb-0\n"));
    }
}
