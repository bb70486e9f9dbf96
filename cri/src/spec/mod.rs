//! CRI container config -> OCI runtime spec: the `config.json` that the `runtime` crate (or runc) executes.
//!
//! Pure translation, as containerd's CRI plugin does it (`internal/cri/opts/spec_linux.go` and
//! `container_create_linux.go`), with three kinds of input:
//!
//! * [`PodContext`]: what the pod provides. The namespace files it pinned (network, IPC, UTS and, when the pod shares
//!   one, PID), the hostname / hosts / resolv.conf files and `/dev/shm` dir every container binds, and its cgroup.
//! * [`ContainerContext`]: the CRI [`ContainerConfig`], the image's [`RuntimeConfig`] (Env, Entrypoint, Cmd, User, ...)
//!   and the container's prepared (already mounted) root filesystem, from which user and group names are resolved.
//! * The host, read only where containerd reads it too: the daemon's capability bounding set (privileged containers
//!   and `add: ALL` get exactly what we hold), its RLIMIT_NOFILE hard limit, its hostname (for `HOSTNAME` when the pod
//!   gives none), device nodes named by CRI `devices` (and all of `/dev` for a privileged container), and missing
//!   host paths of CRI mounts, which are created as directories as containerd and the kubelet do.
//!
//! [`container_spec`] builds the spec; [`resolve_user`] and [`stop_signal`] answer the two questions the container's
//! status needs later (who it runs as, which signal stops it). The spec's `process.user` is exactly what
//! [`resolve_user`] returns, so a caller holding the spec need not resolve twice. Every way a request can be wrong is a [`SpecError`],
//! which the server maps to `InvalidArgument`.
//!
//! # What the spec holds
//! * `process`: args from CRI command/args merged with the image's Entrypoint/Cmd (command replaces the entrypoint
//!   and drops Cmd, args replace Cmd); env = `PATH` default, `HOSTNAME`, image Env, CRI envs (a later entry with the
//!   same key replaces the earlier in place); cwd = CRI working_dir, image WorkingDir or `/`; user from
//!   run_as_user / run_as_username / run_as_group or the image User, with the groups of `/etc/group` and
//!   `supplemental_groups` as additional gids; containerd's default capabilities with add/drop/ambient;
//!   no_new_privileges; oom_score_adj; RLIMIT_NOFILE 1048576 (clamped to our own hard limit: this host's root has
//!   no CAP_SYS_RESOURCE and could not raise it).
//! * `root`: the rootfs, absolute, read-only with `readonly_rootfs`.
//! * `mounts`: proc, /dev tmpfs, devpts, mqueue, sysfs, a cgroup view, then hostname/hosts/resolv.conf/`/dev/shm` and
//!   the CRI mounts (rbind with propagation), shallow destinations first; a CRI mount replaces a default one at the
//!   same destination, and a CRI `/dev` drops every default under `/dev`. As in containerd, BIDIRECTIONAL needs a
//!   shared source mount and HOST_TO_CONTAINER a shared or slave one (read from /proc/self/mountinfo).
//! * `linux`: namespaces (see [`PodContext`]), cgroupsPath `<cgroup_parent>/<id>`, resources, devices and device
//!   cgroup rules, masked / read-only paths, the pod's sysctls, seccomp (`RuntimeDefault` is the table in
//!   [`seccomp_default`], `Localhost` a JSON profile on the host, `Unconfined` none).
//! * `annotations`: the CRI annotations plus containerd's `io.kubernetes.cri.*` keys.
//! * No `hostname`: containers join the pod's UTS namespace (or the host's), where the pod already set it; the
//!   runtime refuses a hostname without a UTS namespace of the container's own.
//!
//! # Not covered (yet)
//! SELinux and AppArmor, user namespaces, image-defined volumes, image volumes (`Mount.image`), recursive read-only
//! and id-mapped mounts, CDI devices, blkio. The runtime does not create a missing `cwd` (runc does): an image
//! whose WorkingDir is absent from its rootfs fails at start until it does.
//! Requests for the unsupported mount and namespace features are refused with a [`SpecError`] rather than ignored.

mod caps;
mod devices;
mod mounts;
mod seccomp;
pub mod seccomp_default;
mod user;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_snapshotter::RuntimeConfig;
use oci_spec::runtime::{
    Linux, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNamespace, LinuxNamespaceType,
    LinuxResources, PosixRlimit, PosixRlimitType, Process, Spec,
};

use crate::api::{ContainerConfig, LinuxContainerSecurityContext, NamespaceMode, PodSandboxConfig};

pub use user::{User, resolve_user};

/// Everything that can be wrong with a container request, as a person can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error(
        "no command specified: the container config has no command or args and the image no Entrypoint or Cmd"
    )]
    NoCommand,
    #[error("invalid environment variable {key:?}: {reason}")]
    Env { key: String, reason: &'static str },
    #[error("invalid user {user:?}: {reason}")]
    User { user: String, reason: String },
    #[error("user {0:?} not found in the image's /etc/passwd")]
    UserNotFound(String),
    #[error("group {0:?} not found in the image's /etc/group")]
    GroupNotFound(String),
    #[error("run_as_group is set without run_as_user or run_as_username")]
    GroupWithoutUser,
    #[error("read {path} in the container's rootfs: {source}")]
    Rootfs {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown capability {0:?}")]
    Capability(String),
    #[error("a privileged container needs a privileged pod (linux.security_context.privileged)")]
    PrivilegedPod,
    #[error("device {path}: {reason}")]
    Device { path: String, reason: String },
    #[error("mount {path}: {reason}")]
    Mount { path: String, reason: String },
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("unknown or invalid signal {0:?}")]
    Signal(String),
    #[error("namespaces: {0}")]
    Namespace(String),
    #[error("{0}")]
    Invalid(String),
    #[error("build the OCI spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
}

/// What the pod provides to each of its containers.
#[derive(Debug, Clone)]
pub struct PodContext<'a> {
    /// The pod sandbox id (annotation `io.kubernetes.cri.sandbox-id`).
    pub id: &'a str,
    pub config: &'a PodSandboxConfig,
    /// Namespace files pinned for the pod, joined by path; `None` means the host's (NamespaceMode NODE).
    pub net_ns: Option<PathBuf>,
    pub ipc_ns: Option<PathBuf>,
    pub uts_ns: Option<PathBuf>,
    /// The pod's shared PID namespace (`namespace_options.pid == POD`), when it has one. A container asking for
    /// POD while the pod has none gets a PID namespace of its own.
    pub pid_ns: Option<PathBuf>,
    /// Files bind-mounted into every container: /etc/hostname, /etc/resolv.conf, /etc/hosts (read-only when the
    /// container's rootfs is).
    pub hostname_file: PathBuf,
    pub resolv_conf: PathBuf,
    pub hosts_file: PathBuf,
    /// The pod's /dev/shm directory; `None` (IPC NODE) binds the host's /dev/shm, as containerd does.
    pub shm: Option<PathBuf>,
    /// The pod's cgroup as a cgroupfs path (`/kubepods/pod123`, `/berth/<pod-id>`).
    pub cgroup_parent: String,
}

/// The container being created.
#[derive(Debug, Clone)]
pub struct ContainerContext<'a> {
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub image: &'a RuntimeConfig,
    /// The prepared root filesystem (already mounted); user and group names are resolved from its /etc/passwd and
    /// /etc/group without following links out of it.
    pub rootfs: &'a Path,
    /// For `namespace_options.pid == TARGET`: the PID namespace file of the target container.
    pub target_pid_ns: Option<PathBuf>,
}

pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// containerd's RLIMIT_NOFILE (its systemd unit's LimitNOFILE=infinity, i.e. nr_open).
const DEFAULT_NOFILE: u64 = 1_048_576;

/// The security context of a container (an empty one when the request has none).
fn security_context(config: &ContainerConfig) -> LinuxContainerSecurityContext {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default()
}

/// Build the OCI runtime spec of a container.
pub fn container_spec(pod: &PodContext, ctr: &ContainerContext) -> Result<Spec, SpecError> {
    let config = ctr.config;
    let sc = security_context(config);
    let privileged = sc.privileged;
    if privileged {
        let pod_privileged = pod
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .is_some_and(|s| s.privileged);
        if !pod_privileged {
            return Err(SpecError::PrivilegedPod);
        }
    }

    // process
    let args = process_args(config, ctr.image)?;
    let env = environment(pod, config, ctr.image)?;
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else {
        ctr.image
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    if !cwd.starts_with('/') {
        return Err(SpecError::Invalid(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }
    let user = resolve_user(config, ctr.image, ctr.rootfs)?;
    let capabilities = caps::capabilities(&sc)?;
    let resources = config.linux.as_ref().and_then(|l| l.resources.clone());
    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_console_size(None);
    process.set_user(user.to_oci());
    process.set_args(Some(args));
    process.set_command_line(None);
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_capabilities(Some(capabilities.to_oci()));
    process.set_rlimits(Some(vec![nofile_rlimit()?]));
    process.set_no_new_privileges(Some(sc.no_new_privs));
    process.set_apparmor_profile(None);
    process.set_oom_score_adj(Some(
        resources
            .as_ref()
            .map(|r| r.oom_score_adj.clamp(-1000, 1000) as i32)
            .unwrap_or(0),
    ));
    process.set_selinux_label(None);

    // linux
    let mut linux = Linux::default();
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_namespaces(Some(namespaces(pod, ctr, &sc)?));
    linux.set_cgroups_path(Some(cgroups_path(&pod.cgroup_parent, ctr.id)));
    let devs = devices::devices(config, privileged)?;
    let mut res = linux_resources(resources.as_ref());
    res.set_devices(Some(devs.rules));
    linux.set_resources(Some(res));
    linux.set_devices(if devs.devices.is_empty() {
        None
    } else {
        Some(devs.devices)
    });
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(if sc.masked_paths.is_empty() {
            DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        } else {
            sc.masked_paths.clone()
        }));
        linux.set_readonly_paths(Some(if sc.readonly_paths.is_empty() {
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            sc.readonly_paths.clone()
        }));
    }
    let sysctls: HashMap<String, String> = pod
        .config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .unwrap_or_default();
    linux.set_sysctl(if sysctls.is_empty() {
        None
    } else {
        Some(sysctls)
    });
    linux.set_seccomp(if privileged {
        None
    } else {
        seccomp::profile(&sc, &capabilities)?
    });
    linux.set_mount_label(None);

    // mounts
    let mounts = mounts::mounts(pod, config, &sc)?;
    linux.set_rootfs_propagation(mounts.rootfs_propagation);

    let mut spec = Spec::default();
    spec.set_version("1.1.0".into());
    spec.set_root(Some(
        oci_spec::runtime::RootBuilder::default()
            .path(ctr.rootfs.to_path_buf())
            .readonly(sc.readonly_rootfs)
            .build()?,
    ));
    spec.set_mounts(Some(mounts.mounts));
    spec.set_process(Some(process));
    spec.set_hostname(None);
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(Some(annotations(pod, ctr)));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// containerd's default masked paths (`oci.populateDefaultUnixSpec`).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// containerd's default read-only paths.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The process args: CRI command/args merged with the image's Entrypoint/Cmd as containerd (and Docker) do.
pub fn process_args(
    config: &ContainerConfig,
    image: &RuntimeConfig,
) -> Result<Vec<String>, SpecError> {
    let mut command = config.command.clone();
    let mut args = config.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone().unwrap_or_default();
        }
        let entrypoint = image.entrypoint.clone().unwrap_or_default();
        // `ENTRYPOINT [""]` resets the entrypoint.
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint;
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(command)
}

/// Set `KEY=value` in `env`, replacing an entry with the same key in place.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or_default();
    match env
        .iter_mut()
        .find(|e| e.split('=').next().unwrap_or_default() == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

fn environment(
    pod: &PodContext,
    config: &ContainerConfig,
    image: &RuntimeConfig,
) -> Result<Vec<String>, SpecError> {
    let mut env = vec![DEFAULT_PATH.to_string()];
    let hostname = if pod.config.hostname.is_empty() {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    } else {
        pod.config.hostname.clone()
    };
    set_env(&mut env, format!("HOSTNAME={hostname}"));
    for e in image.env.iter().flatten() {
        if e.is_empty() || e.starts_with('=') {
            continue;
        }
        if e.contains('=') {
            set_env(&mut env, e.clone());
        } else {
            set_env(&mut env, format!("{e}="));
        }
    }
    for kv in &config.envs {
        if kv.key.is_empty() {
            return Err(SpecError::Env {
                key: kv.key.clone(),
                reason: "the name is empty",
            });
        }
        if kv.key.contains('=') || kv.key.contains('\0') {
            return Err(SpecError::Env {
                key: kv.key.clone(),
                reason: "the name contains '=' or a NUL byte",
            });
        }
        let value = env_value(&kv.value).map_err(|reason| SpecError::Env {
            key: kv.key.clone(),
            reason,
        })?;
        set_env(&mut env, format!("{}={value}", kv.key));
    }
    Ok(env)
}

/// `KeyValue.value` is `bytes` since cri-api 0.36; the environment needs text without NUL.
fn env_value(v: &[u8]) -> Result<&str, &'static str> {
    let s = std::str::from_utf8(v).map_err(|_| "the value is not UTF-8")?;
    if s.contains('\0') {
        return Err("the value contains a NUL byte");
    }
    Ok(s)
}

fn nofile_rlimit() -> Result<PosixRlimit, SpecError> {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(DEFAULT_NOFILE);
    let n = DEFAULT_NOFILE.min(hard);
    Ok(oci_spec::runtime::PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(n)
        .soft(n)
        .build()?)
}

/// `<cgroup_parent>/<id>` as an absolute cgroupfs path.
fn cgroups_path(parent: &str, id: &str) -> PathBuf {
    let parent = parent.trim_matches('/');
    if parent.is_empty() {
        PathBuf::from(format!("/{id}"))
    } else {
        PathBuf::from(format!("/{parent}/{id}"))
    }
}

fn ns(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path.map(Path::to_path_buf));
    n
}

fn namespaces(
    pod: &PodContext,
    ctr: &ContainerContext,
    sc: &LinuxContainerSecurityContext,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let opts = sc.namespace_options.clone().unwrap_or_default();
    if let Some(u) = &opts.userns_options
        && u.mode() != NamespaceMode::Node
    {
        return Err(SpecError::Namespace(
            "user namespaces are not supported (userns_options.mode must be NODE)".into(),
        ));
    }
    let mut list = vec![ns(LinuxNamespaceType::Mount, None)];
    match opts.pid() {
        NamespaceMode::Node => {}
        NamespaceMode::Pod => list.push(ns(LinuxNamespaceType::Pid, pod.pid_ns.as_deref())),
        NamespaceMode::Container => list.push(ns(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Target => match &ctr.target_pid_ns {
            Some(p) => list.push(ns(LinuxNamespaceType::Pid, Some(p))),
            None => {
                return Err(SpecError::Namespace(format!(
                    "pid namespace of target container {:?} is not known",
                    opts.target_id
                )));
            }
        },
    }
    for (typ, path) in [
        (LinuxNamespaceType::Network, &pod.net_ns),
        (LinuxNamespaceType::Ipc, &pod.ipc_ns),
        (LinuxNamespaceType::Uts, &pod.uts_ns),
    ] {
        if let Some(p) = path {
            list.push(ns(typ, Some(p)));
        }
    }
    // containerd leaves privileged containers in the host's cgroup namespace so they see the whole hierarchy.
    if !sc.privileged {
        list.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    Ok(list)
}

/// CRI resources as OCI ones: used for the spec and for UpdateContainerResources.
pub fn linux_resources(r: Option<&crate::api::LinuxContainerResources>) -> LinuxResources {
    let mut res = LinuxResources::default();
    let Some(r) = r else {
        return res;
    };
    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
        any_cpu = true;
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
        any_cpu = true;
    }
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        any_cpu = true;
    }
    if any_cpu {
        res.set_cpu(Some(cpu));
    }
    if r.memory_limit_in_bytes != 0 || r.memory_swap_limit_in_bytes != 0 {
        let mut mem = LinuxMemory::default();
        if r.memory_limit_in_bytes != 0 {
            mem.set_limit(Some(r.memory_limit_in_bytes));
            // Swap equal to the limit: no swapping by default (the runtime skips it where there is no memsw).
            mem.set_swap(Some(r.memory_limit_in_bytes));
        }
        if r.memory_swap_limit_in_bytes != 0 {
            mem.set_swap(Some(r.memory_swap_limit_in_bytes));
        }
        res.set_memory(Some(mem));
    }
    if !r.hugepage_limits.is_empty() {
        res.set_hugepage_limits(Some(
            r.hugepage_limits
                .iter()
                .map(|h| {
                    let mut l = LinuxHugepageLimit::default();
                    l.set_page_size(h.page_size.clone());
                    l.set_limit(h.limit.min(i64::MAX as u64) as i64);
                    l
                })
                .collect(),
        ));
    }
    if !r.unified.is_empty() {
        res.set_unified(Some(r.unified.clone()));
    }
    res
}

fn annotations(pod: &PodContext, ctr: &ContainerContext) -> HashMap<String, String> {
    let mut a = ctr.config.annotations.clone();
    let meta = pod.config.metadata.clone().unwrap_or_default();
    let image = ctr
        .config
        .image
        .as_ref()
        .map(|i| {
            if i.user_specified_image.is_empty() {
                i.image.clone()
            } else {
                i.user_specified_image.clone()
            }
        })
        .unwrap_or_default();
    let name = ctr
        .config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container".to_string()),
        ("io.kubernetes.cri.sandbox-id", pod.id.to_string()),
        ("io.kubernetes.cri.sandbox-namespace", meta.namespace),
        ("io.kubernetes.cri.sandbox-uid", meta.uid),
        ("io.kubernetes.cri.sandbox-name", meta.name),
        ("io.kubernetes.cri.container-name", name),
        ("io.kubernetes.cri.image-name", image),
    ] {
        a.insert(k.to_string(), v);
    }
    a
}

/// The signal that stops the container: the CRI `stop_signal`, else the image's StopSignal (`SIGQUIT`, `QUIT`,
/// `3`, `SIGRTMIN+2`), else SIGTERM.
pub fn stop_signal(config: &ContainerConfig, image: &RuntimeConfig) -> Result<i32, SpecError> {
    use crate::api::Signal;
    let cri = Signal::try_from(config.stop_signal)
        .map_err(|_| SpecError::Signal(config.stop_signal.to_string()))?;
    if cri != Signal::RuntimeDefault {
        return parse_signal(cri.as_str_name());
    }
    match image.stop_signal.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => parse_signal(s),
        _ => Ok(libc::SIGTERM),
    }
}

const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// Parse a signal as Docker/moby do: a number, or a name with or without `SIG`, any case; `RTMIN+n`, `RTMAX-n`
/// and the CRI enum's `RTMINPLUSn` / `RTMAXMINUSn`.
pub fn parse_signal(raw: &str) -> Result<i32, SpecError> {
    let bad = || SpecError::Signal(raw.to_string());
    if let Ok(n) = raw.parse::<i32>() {
        return if (1..=SIGRTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = raw.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let rt = |base: i32, rest: &str, sign: i32| -> Result<i32, SpecError> {
        let n: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().map_err(|_| bad())?
        };
        let v = base + sign * n;
        if (SIGRTMIN..=SIGRTMAX).contains(&v) {
            Ok(v)
        } else {
            Err(bad())
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let rest = rest
            .strip_prefix('+')
            .or_else(|| rest.strip_prefix("PLUS"))
            .unwrap_or(rest);
        return rt(SIGRTMIN, rest, 1);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let rest = rest
            .strip_prefix('-')
            .or_else(|| rest.strip_prefix("MINUS"))
            .unwrap_or(rest);
        return rt(SIGRTMAX, rest, -1);
    }
    Ok(match name {
        "ABRT" | "IOT" => libc::SIGABRT,
        "ALRM" => libc::SIGALRM,
        "BUS" => libc::SIGBUS,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "FPE" => libc::SIGFPE,
        "HUP" => libc::SIGHUP,
        "ILL" => libc::SIGILL,
        "INT" => libc::SIGINT,
        "IO" | "POLL" => libc::SIGIO,
        "KILL" => libc::SIGKILL,
        "PIPE" => libc::SIGPIPE,
        "PROF" => libc::SIGPROF,
        "PWR" => libc::SIGPWR,
        "QUIT" => libc::SIGQUIT,
        "SEGV" => libc::SIGSEGV,
        "STKFLT" => libc::SIGSTKFLT,
        "STOP" => libc::SIGSTOP,
        "SYS" => libc::SIGSYS,
        "TERM" => libc::SIGTERM,
        "TRAP" => libc::SIGTRAP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "VTALRM" => libc::SIGVTALRM,
        "WINCH" => libc::SIGWINCH,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        _ => return Err(bad()),
    })
}
