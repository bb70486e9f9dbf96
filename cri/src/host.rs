//! What this host offers Berth: kernel, cgroup layout, storage, runtimes and networks.
//!
//! Shared by `berth info` (for a person) and the CRI `Status` call (for the kubelet), so both always agree on
//! what is missing. Probing only reads the system; nothing here mounts or creates anything.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, HandlerKind};

#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub kernel: String,
    pub os: String,
    pub storage: StorageInfo,
    pub cgroups: CgroupInfo,
    pub runtimes: Vec<HandlerInfo>,
    pub network: NetworkInfo,
    /// One entry per prerequisite that is missing, phrased as what to do about it.
    pub missing: Vec<Missing>,
}

/// A missing prerequisite, with the part of Berth it stops.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub area: Area,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Storage,
    Cgroups,
    /// The default runtime handler: without it no pod can run.
    Runtime,
    /// A non-default handler: only pods that ask for it fail.
    OptionalRuntime,
    Network,
}

impl Missing {
    /// Whether this keeps the runtime from running any pod (the CRI's RuntimeReady).
    pub fn blocks_runtime(&self) -> bool {
        matches!(self.area, Area::Storage | Area::Cgroups | Area::Runtime)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageInfo {
    pub driver: String,
    pub root: PathBuf,
    pub backing_filesystem: String,
    pub overlay_supported: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CgroupInfo {
    /// `v1`, `v2` or `hybrid` (v1 controllers beside a v2 hierarchy, as on this project's CI machines).
    pub version: String,
    pub driver: String,
    /// v1 controllers with their own hierarchy.
    pub v1_controllers: Vec<String>,
    /// Controllers available in the v2 hierarchy.
    pub v2_controllers: Vec<String>,
    pub v2_mount: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HandlerInfo {
    pub name: String,
    pub kind: String,
    pub path: Option<PathBuf>,
    pub available: bool,
    pub default: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkInfo {
    pub conf_dir: PathBuf,
    /// The network configuration file that would be used, if any.
    pub config_file: Option<PathBuf>,
    pub bin_dirs: Vec<PathBuf>,
}

/// The controllers a pod needs to be limited and measured.
const NEEDED_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "cpuset", "memory", "pids", "devices"];

impl HostInfo {
    pub fn probe(config: &Config) -> HostInfo {
        let kernel = nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {}",
                    u.release().to_string_lossy(),
                    u.machine().to_string_lossy()
                )
            })
            .unwrap_or_else(|e| format!("unknown ({e})"));
        let storage = probe_storage(config);
        let cgroups = probe_cgroups(config);
        let runtimes = probe_runtimes(config);
        let network = NetworkInfo {
            conf_dir: config.cni.conf_dir.clone(),
            config_file: first_network_config(&config.cni.conf_dir),
            bin_dirs: config.cni.bin_dirs.clone(),
        };

        let mut missing = Vec::new();
        if config.snapshotter == crate::config::SnapshotterKind::Overlayfs
            && !storage.overlay_supported
        {
            missing.push(Missing::new(
                Area::Storage,
                "overlayfs is not available in this kernel: load the overlay module or set snapshotter = \"native\"",
            ));
        }
        if storage.backing_filesystem == "overlayfs"
            && config.snapshotter == crate::config::SnapshotterKind::Overlayfs
        {
            missing.push(Missing::new(Area::Storage, format!(
                "{} is itself on overlayfs, where overlayfs cannot stack: set snapshotter = \"native\" or move root",
                config.root.display()
            )));
        }
        if cgroups.version == "none" {
            missing.push(Missing::new(
                Area::Cgroups,
                "no cgroup filesystem is mounted under /sys/fs/cgroup",
            ));
        } else {
            for c in NEEDED_CONTROLLERS {
                let have = cgroups.v1_controllers.iter().any(|x| x == c)
                    || cgroups.v2_controllers.iter().any(|x| x == c)
                    || (*c == "cpuacct" && cgroups.v2_controllers.iter().any(|x| x == "cpu"))
                    || (*c == "devices" && cgroups.version == "v2");
                if !have {
                    missing.push(Missing::new(
                        Area::Cgroups,
                        format!("cgroup controller {c} is not available: containers cannot be limited by it"),
                    ));
                }
            }
        }
        for h in &runtimes {
            if !h.available {
                let area = if h.default {
                    Area::Runtime
                } else {
                    Area::OptionalRuntime
                };
                missing.push(Missing::new(
                    area,
                    format!(
                        "runtime handler {}: binary {} not found{}",
                        h.name,
                        h.path.as_deref().unwrap_or(Path::new("?")).display(),
                        if h.default {
                            " (it is the default handler)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        if network.config_file.is_none() {
            missing.push(Missing::new(
                Area::Network,
                format!(
                    "no CNI network config in {}: pods can only get a host network",
                    network.conf_dir.display()
                ),
            ));
        }
        HostInfo {
            kernel,
            os: os_name(),
            storage,
            cgroups,
            runtimes,
            network,
            missing,
        }
    }
}

impl Missing {
    fn new(area: Area, message: impl Into<String>) -> Missing {
        Missing {
            area,
            message: message.into(),
        }
    }
}

fn os_name() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn probe_storage(config: &Config) -> StorageInfo {
    // The root may not exist yet on a fresh host: the filesystem that will hold it is its nearest ancestor's.
    let mut dir = config.root.as_path();
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
    let backing_filesystem = nix::sys::statfs::statfs(dir)
        .map(|s| fs_name(s.filesystem_type().0))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let overlay_supported = std::fs::read_to_string("/proc/filesystems")
        .map(|t| {
            t.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false);
    StorageInfo {
        driver: config.snapshotter.to_string(),
        root: config.root.clone(),
        backing_filesystem,
        overlay_supported,
    }
}

/// `statfs` magic numbers (linux/magic.h) of the filesystems a root dir is commonly on.
#[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64 but not on every target
fn fs_name(magic: libc::__fsword_t) -> String {
    let magic = magic as i64;
    match magic {
        0xEF53 => "extfs",
        0x9123683E => "btrfs",
        0x58465342 => "xfs",
        0x01021994 => "tmpfs",
        0x794C7630 => "overlayfs",
        0x2FC12FC1 => "zfs",
        0x6969 => "nfs",
        0x65735546 => "fuse",
        0xF2F52010 => "f2fs",
        _ => return format!("unknown (magic {magic:#x})"),
    }
    .to_string()
}

fn probe_cgroups(config: &Config) -> CgroupInfo {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v1 = Vec::new();
    let mut v2_mount = None;
    for line in mountinfo.lines() {
        // Fields: ... mount_point ... - fstype source super_options
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = pre.split_whitespace().nth(4).unwrap_or("");
        let mut post = post.split_whitespace();
        let fstype = post.next().unwrap_or("");
        let opts = post.nth(1).unwrap_or("");
        match fstype {
            "cgroup" => {
                for o in opts.split(',') {
                    if matches!(
                        o,
                        "cpu"
                            | "cpuacct"
                            | "cpuset"
                            | "memory"
                            | "pids"
                            | "devices"
                            | "freezer"
                            | "blkio"
                            | "hugetlb"
                            | "net_cls"
                            | "net_prio"
                            | "perf_event"
                            | "rdma"
                            | "misc"
                    ) && !v1.contains(&o.to_string())
                    {
                        v1.push(o.to_string());
                    }
                }
            }
            "cgroup2" if v2_mount.is_none() => v2_mount = Some(PathBuf::from(mount_point)),
            _ => {}
        }
    }
    v1.sort();
    let v2_controllers: Vec<String> = v2_mount
        .as_ref()
        .and_then(|m| std::fs::read_to_string(m.join("cgroup.controllers")).ok())
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let version = match (v1.is_empty(), v2_mount.is_some()) {
        (true, false) => "none",
        (false, false) => "v1",
        (true, true) => "v2",
        (false, true) => "hybrid",
    }
    .to_string();
    CgroupInfo {
        version,
        driver: config.cgroup_driver.to_string(),
        v1_controllers: v1,
        v2_controllers,
        v2_mount,
    }
}

fn probe_runtimes(config: &Config) -> Vec<HandlerInfo> {
    config
        .runtimes
        .iter()
        .map(|(name, h)| {
            let (path, available) = match h.kind {
                HandlerKind::Builtin => (std::env::current_exe().ok(), true),
                _ => {
                    let found = h.path.as_deref().and_then(find_executable);
                    let available = found.is_some();
                    (found.or_else(|| h.path.clone()), available)
                }
            };
            HandlerInfo {
                name: name.clone(),
                kind: format!("{:?}", h.kind).to_lowercase(),
                path,
                available,
                default: *name == config.default_runtime,
            }
        })
        .collect()
}

/// Resolves a binary the way a shell would: as given when it has a slash, else through PATH.
pub fn find_executable(bin: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if bin.components().count() > 1 {
        return is_exec(bin).then(|| bin.to_path_buf());
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| is_exec(p))
}

/// The network config file the CNI client would load: the lexically first `.conflist`, `.conf` or `.json`.
pub fn first_network_config(dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            ) && p.is_file()
        })
        .collect();
    files.sort();
    files.into_iter().next()
}

impl std::fmt::Display for HostInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.storage;
        writeln!(f, "Storage Driver: {}", s.driver)?;
        writeln!(f, " Root Dir: {}", s.root.display())?;
        writeln!(f, " Backing Filesystem: {}", s.backing_filesystem)?;
        writeln!(f, " Overlayfs Supported: {}", yes_no(s.overlay_supported))?;
        let c = &self.cgroups;
        writeln!(f, "Cgroup Version: {}", c.version)?;
        writeln!(f, "Cgroup Driver: {}", c.driver)?;
        writeln!(f, " v1 Controllers: {}", list_or_none(&c.v1_controllers))?;
        if let Some(m) = &c.v2_mount {
            writeln!(
                f,
                " v2 Hierarchy: {} (controllers: {})",
                m.display(),
                list_or_none(&c.v2_controllers)
            )?;
        }
        writeln!(f, "Runtimes:")?;
        for h in &self.runtimes {
            writeln!(
                f,
                " {}{}: {} {}{}",
                h.name,
                if h.default { " (default)" } else { "" },
                h.kind,
                h.path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                if h.available { "" } else { " [not found]" }
            )?;
        }
        writeln!(f, "Network:")?;
        writeln!(f, " CNI Conf Dir: {}", self.network.conf_dir.display())?;
        match &self.network.config_file {
            Some(p) => writeln!(f, " CNI Config: {}", p.display())?,
            None => writeln!(f, " CNI Config: none")?,
        }
        let dirs: Vec<String> = self
            .network
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        writeln!(f, " CNI Bin Dirs: {}", dirs.join(" "))?;
        writeln!(f, "Kernel Version: {}", self.kernel)?;
        writeln!(f, "Operating System: {}", self.os)?;
        if self.missing.is_empty() {
            writeln!(f, "Prerequisites: all present")?;
        } else {
            writeln!(f, "Missing Prerequisites:")?;
            for m in &self.missing {
                writeln!(f, " WARNING: {}", m.message)?;
            }
        }
        Ok(())
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}
