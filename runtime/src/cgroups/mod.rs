//! Cgroupfs without systemd: v1 (one hierarchy per controller), v2 (unified) and the hybrid layout of this machine.
//!
//! `cgroups-rs` assumes either a pure v1 or a pure v2 host and does not cope with a hybrid host where the v2 mount at
//! `/sys/fs/cgroup/unified` carries no controllers; this module reads `/proc/self/mountinfo` instead and treats every
//! mounted hierarchy alike: one directory per hierarchy at the spec's `cgroupsPath`. Limits are written to the v1
//! controllers when the host is v1 or hybrid, and to the unified hierarchy when it is pure v2.
//!
//! Device rules are enforced on v1 through the `devices` controller and on pure v2 by a BPF device program attached
//! to the cgroup ([`bpf_devices`]).

pub mod bpf_devices;
mod v1;
mod v2;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::util::write_file;

type Result<T> = std::result::Result<T, CgroupError>;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// Controllers bound to it (`["cpu"]`, `["memory"]`; empty for v2 and named hierarchies).
    pub controllers: Vec<String>,
    /// `name=` of a named v1 hierarchy (`systemd`): it carries no limits, but systemd tracks services by it, so a
    /// container left in the daemon's there would be killed with the daemon's service.
    pub name: Option<String>,
    pub mount: PathBuf,
    pub v2: bool,
}

/// Every cgroup hierarchy this process sees.
#[derive(Debug, Clone)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// Read the mounted hierarchies from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(|source| CgroupError::Io {
            op: "read",
            path: path.into(),
            source,
        })?;
        let layout = Self::parse(&text);
        if layout.hierarchies.is_empty() {
            Err(CgroupError::NoHierarchy)
        } else {
            Ok(layout)
        }
    }

    fn parse(mountinfo: &str) -> Self {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post = post.split_whitespace();
            let (Some(fstype), _src, Some(opts)) = (post.next(), post.next(), post.next()) else {
                continue;
            };
            let Some(mount) = pre.split_whitespace().nth(4) else {
                continue;
            };
            let mount = PathBuf::from(mount.replace("\\040", " "));
            if hierarchies.iter().any(|h| h.mount == mount) {
                continue;
            }
            match fstype {
                "cgroup2" => hierarchies.push(Hierarchy {
                    controllers: Vec::new(),
                    name: None,
                    mount,
                    v2: true,
                }),
                "cgroup" => {
                    let controllers: Vec<String> = opts
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_string)
                        .collect();
                    let name = opts
                        .split(',')
                        .find_map(|o| o.strip_prefix("name="))
                        .map(str::to_string);
                    if !controllers.is_empty() || name.is_some() {
                        hierarchies.push(Hierarchy {
                            controllers,
                            name,
                            mount,
                            v2: false,
                        });
                    }
                }
                _ => {}
            }
        }
        Layout { hierarchies }
    }

    /// True on a pure v2 host (no v1 controller mounted).
    pub fn is_v2(&self) -> bool {
        self.hierarchies.iter().all(|h| h.v2)
    }
}

const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "pids",
    "devices",
    "freezer",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

/// Turn the spec's `cgroupsPath` into a path relative to each hierarchy's root.
///
/// Absolute paths are taken as they are; relative ones go under `/berth`; with `--systemd-cgroup` the
/// `slice:prefix:name` form maps to `/<slice>/<prefix>-<name>.scope` on cgroupfs (no systemd D-Bus calls).
pub fn resolve_path(spec_path: Option<&Path>, id: &str, systemd: bool) -> PathBuf {
    let raw = spec_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if systemd || (raw.contains(':') && !raw.starts_with('/')) {
        let parts: Vec<&str> = raw.split(':').collect();
        if parts.len() == 3 {
            let slice = if parts[0].is_empty() {
                "system.slice"
            } else {
                parts[0]
            };
            return PathBuf::from(format!("/{slice}/{}-{}.scope", parts[1], parts[2]));
        }
    }
    if raw.is_empty() {
        return PathBuf::from(format!("/berth/{id}"));
    }
    if raw.starts_with('/') {
        PathBuf::from(raw)
    } else {
        PathBuf::from("/berth").join(raw)
    }
}

/// A container's cgroup: one directory in each hierarchy.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub dirs: Vec<(Hierarchy, PathBuf)>,
    pub v2: bool,
}

impl Cgroup {
    /// Create (or reuse) the directories for `rel` in every hierarchy.
    pub fn create(layout: &Layout, rel: &Path) -> Result<Self> {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        let v2 = layout.is_v2();
        let mut dirs = Vec::new();
        for h in &layout.hierarchies {
            let dir = h.mount.join(rel);
            if h.controllers.iter().any(|c| c == "cpuset") {
                v1::mkdir_cpuset(&h.mount, &dir)?;
            } else if h.v2 && v2 {
                v2::mkdir_enabling(&h.mount, &dir)?;
            } else {
                fs::create_dir_all(&dir).map_err(|source| CgroupError::Io {
                    op: "mkdir",
                    path: dir.clone(),
                    source,
                })?;
            }
            dirs.push((h.clone(), dir));
        }
        Ok(Cgroup { dirs, v2 })
    }

    /// The directories `rel` names in every hierarchy, without creating them (stats, updates, OOM checks).
    pub fn open(layout: &Layout, rel: &Path) -> Self {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        let dirs = layout
            .hierarchies
            .iter()
            .map(|h| (h.clone(), h.mount.join(rel)))
            .collect();
        Cgroup {
            dirs,
            v2: layout.is_v2(),
        }
    }

    /// Rebuild from the directories saved in a state file.
    pub fn from_dirs(layout: &Layout, saved: &[PathBuf]) -> Self {
        let mut dirs = Vec::new();
        for d in saved {
            if let Some(h) = layout
                .hierarchies
                .iter()
                .filter(|h| d.starts_with(&h.mount))
                .max_by_key(|h| h.mount.as_os_str().len())
            {
                dirs.push((h.clone(), d.clone()));
            }
        }
        Cgroup {
            dirs,
            v2: layout.is_v2(),
        }
    }

    /// The directories, for the state file.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.clone()).collect()
    }

    /// The directory of the hierarchy holding `controller` (v1), or the unified one (v2).
    pub fn dir_of(&self, controller: &str) -> Option<&Path> {
        if self.v2 {
            return self.dirs.first().map(|(_, d)| d.as_path());
        }
        self.dirs
            .iter()
            .find(|(h, _)| h.controllers.iter().any(|c| c == controller))
            .map(|(_, d)| d.as_path())
    }

    /// Apply the spec's resources (create and update).
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        if self.v2 {
            if let Some((_, d)) = self.dirs.first() {
                v2::apply(d, res)?;
            }
            return Ok(());
        }
        for (h, d) in &self.dirs {
            if !h.v2 {
                v1::apply(&h.controllers, d, res)?;
            }
        }
        Ok(())
    }

    /// Move `pid` into every hierarchy's directory.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for (_, d) in &self.dirs {
            let p = d.join("cgroup.procs");
            write_file(&p, &pid.to_string()).map_err(|source| CgroupError::Io {
                op: "write",
                path: p,
                source,
            })?;
        }
        Ok(())
    }

    /// PIDs in the cgroup (from the first hierarchy; all hold the same set).
    pub fn pids(&self) -> Vec<i32> {
        let Some(d) = self
            .dir_of("pids")
            .or_else(|| self.dirs.first().map(|(_, d)| d.as_path()))
        else {
            return Vec::new();
        };
        fs::read_to_string(d.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Signal every process in the cgroup (`kill --all`, `delete --force`). Frozen processes are thawed first.
    pub fn signal_all(&self, sig: i32) {
        for pid in self.pids() {
            // SAFETY: kill(2) with a pid read from cgroup.procs; processes in the cgroup are ours to signal.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Freeze (`true`) or thaw every process: v1 `freezer.state`, v2 `cgroup.freeze`.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        if self.v2 {
            let d = self
                .dirs
                .first()
                .map(|(_, d)| d.clone())
                .ok_or(CgroupError::NoHierarchy)?;
            return set(&d, "cgroup.freeze", if frozen { "1" } else { "0" });
        }
        let d = self
            .dir_of("freezer")
            .ok_or_else(|| CgroupError::Unsupported("no freezer hierarchy".into()))?;
        set(d, "freezer.state", if frozen { "FROZEN" } else { "THAWED" })
    }

    /// True when the cgroup is frozen.
    pub fn is_frozen(&self) -> bool {
        if self.v2 {
            return self
                .dirs
                .first()
                .and_then(|(_, d)| read_u64(&d.join("cgroup.freeze")))
                == Some(1);
        }
        self.dir_of("freezer")
            .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN")
    }

    /// Remove the directories, retrying while exiting tasks still hold them.
    pub fn destroy(&self) -> Result<()> {
        for (_, d) in &self.dirs {
            let mut tries = 0;
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(source) => {
                        return Err(CgroupError::Io {
                            op: "rmdir",
                            path: d.clone(),
                            source,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// True when the memory controller recorded an OOM kill in this cgroup.
    pub fn oom_killed(&self) -> bool {
        oom_kill_count(self.memory_events_file().as_deref()) > 0
    }

    /// The file that counts OOM kills: `memory.oom_control` on v1, `memory.events` on v2.
    pub fn memory_events_file(&self) -> Option<PathBuf> {
        let d = self.dir_of("memory")?;
        Some(if self.v2 {
            d.join("memory.events")
        } else {
            d.join("memory.oom_control")
        })
    }

    /// Usage figures for CRI stats.
    pub fn stats(&self) -> Stats {
        if self.v2 {
            v2::stats(self)
        } else {
            v1::stats(self)
        }
    }
}

/// The `oom_kill` counter of a `memory.oom_control` (v1) or `memory.events` (v2) file; 0 when unreadable.
pub fn oom_kill_count(file: Option<&Path>) -> u64 {
    let Some(f) = file else { return 0 };
    let text = fs::read_to_string(f).unwrap_or_default();
    key_value(&text, "oom_kill").unwrap_or(0)
}

pub(crate) fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        if it.next() == Some(key) {
            it.next()?.parse().ok()
        } else {
            None
        }
    })
}

pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(crate) fn set(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    write_file(&p, value).map_err(|source| CgroupError::Io {
        op: "write",
        path: p,
        source,
    })
}

/// Container usage, as the CRI's ContainerStats and cAdvisor-style metrics want it. Counters a hierarchy does not
/// offer stay 0; figures that only exist with a limit or a kernel feature are `None` without one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub cpu_usage_ns: u64,
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file pages: what the kubelet evicts on.
    pub memory_working_set_bytes: u64,
    pub memory_rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// CPU time in user and kernel mode (v1 reports them in clock ticks; converted to ns).
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// CFS bandwidth control: elapsed periods, throttled periods, time throttled.
    pub cpu_periods: u64,
    pub cpu_throttled_periods: u64,
    pub cpu_throttled_ns: u64,
    /// Page cache, file-mapped, active and inactive file pages.
    pub memory_cache_bytes: u64,
    pub memory_mapped_file_bytes: u64,
    pub memory_active_file_bytes: u64,
    pub memory_inactive_file_bytes: u64,
    /// Peak usage (v1 `max_usage_in_bytes`, v2 `memory.peak` when the kernel has it).
    pub memory_max_usage_bytes: u64,
    /// Times usage hit the limit (v1 only).
    pub memory_failcnt: u64,
    /// The memory limit, when one is set.
    pub memory_limit_bytes: Option<u64>,
    /// Swap in use and its limit, when the kernel accounts swap for the cgroup.
    pub swap_usage_bytes: Option<u64>,
    pub swap_limit_bytes: Option<u64>,
    /// OOM kills recorded by the memory controller.
    pub oom_kills: u64,
    /// Processes in the cgroup and all cgroups below it.
    pub processes: u64,
    /// `pids.max`, when a limit is set.
    pub pids_limit: Option<u64>,
    /// Pressure stall information, when the kernel exposes it for the cgroup (v2 with PSI).
    pub cpu_psi: Option<Psi>,
    pub memory_psi: Option<Psi>,
    pub io_psi: Option<Psi>,
    /// Block I/O per device of the cgroup and everything below it (v1 blkio throttle counters, v2 `io.stat`).
    pub blkio: Vec<BlkioDevice>,
    /// Kernel memory (v1 `memory.kmem.usage_in_bytes`, v2 `memory.stat` `kernel`).
    pub memory_kernel_bytes: u64,
    /// Tasks (threads) in the cgroup and below: `pids.current`, else counted.
    pub threads: u64,
    /// Open file descriptors of the cgroup's processes, and how many of them are sockets.
    pub file_descriptors: u64,
    pub sockets: u64,
}

/// One block device's I/O counters: bytes and operations, read and written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlkioDevice {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

fn device_entry(devs: &mut Vec<BlkioDevice>, dev: &str) -> Option<usize> {
    let (major, minor) = dev.split_once(':')?;
    let (major, minor) = (major.parse().ok()?, minor.parse().ok()?);
    if let Some(i) = devs
        .iter()
        .position(|d| d.major == major && d.minor == minor)
    {
        return Some(i);
    }
    devs.push(BlkioDevice {
        major,
        minor,
        ..Default::default()
    });
    Some(devs.len() - 1)
}

/// Parses v1 `blkio.throttle.io_service_bytes` and `blkio.throttle.io_serviced` (`MAJ:MIN Op value` lines).
pub(crate) fn parse_blkio_v1(service_bytes: &str, serviced: &str) -> Vec<BlkioDevice> {
    let mut devs = Vec::new();
    for (text, bytes) in [(service_bytes, true), (serviced, false)] {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [dev, op, value] = f[..] else { continue };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            let Some(i) = device_entry(&mut devs, dev) else {
                continue;
            };
            let d = &mut devs[i];
            match (op, bytes) {
                ("Read", true) => d.read_bytes = value,
                ("Write", true) => d.write_bytes = value,
                ("Read", false) => d.reads = value,
                ("Write", false) => d.writes = value,
                _ => {}
            }
        }
    }
    devs
}

/// Parses v2 `io.stat` (`MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. ...` lines).
pub(crate) fn parse_io_stat(text: &str) -> Vec<BlkioDevice> {
    let mut devs = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(i) = f.next().and_then(|dev| device_entry(&mut devs, dev)) else {
            continue;
        };
        let d = &mut devs[i];
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = v.parse().unwrap_or(0);
            match k {
                "rbytes" => d.read_bytes = v,
                "wbytes" => d.write_bytes = v,
                "rios" => d.reads = v,
                "wios" => d.writes = v,
                _ => {}
            }
        }
    }
    devs
}

/// Processes listed in `cgroup.procs` of `dir` and of every cgroup below it.
pub(crate) fn all_procs(dir: &Path) -> Vec<i32> {
    let mut out: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(all_procs(&e.path()));
        }
    }
    out
}

/// Lines of `file` (`tasks`, `cgroup.threads`) in `dir` and every cgroup below it.
pub(crate) fn count_lines_recursive(dir: &Path, file: &str) -> u64 {
    let own = fs::read_to_string(dir.join(file))
        .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .unwrap_or(0);
    let children: u64 = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| count_lines_recursive(&e.path(), file))
        .sum();
    own + children
}

/// Open file descriptors of `pids` (entries of `/proc/PID/fd`) and how many are sockets (links to `socket:[..]`).
/// Processes that exit meanwhile, or whose table cannot be read, count nothing.
pub fn fd_counts(pids: &[i32]) -> (u64, u64) {
    let (mut fds, mut sockets) = (0, 0);
    for pid in pids {
        let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            fds += 1;
            if fs::read_link(e.path())
                .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
            {
                sockets += 1;
            }
        }
    }
    (fds, sockets)
}

/// One `*.pressure` file: the `some` and `full` lines.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Psi {
    pub some: PsiLine,
    pub full: PsiLine,
}

/// Averages in percent over 10, 60 and 300 seconds; `total_us` stalled microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total_us: u64,
}

/// Parses a `cpu.pressure` / `memory.pressure` / `io.pressure` file; `None` when absent or unreadable.
pub(crate) fn read_psi(path: &Path) -> Option<Psi> {
    parse_psi(&fs::read_to_string(path).ok()?)
}

fn parse_psi(text: &str) -> Option<Psi> {
    let mut psi = Psi::default();
    let mut seen = false;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let target = match it.next() {
            Some("some") => &mut psi.some,
            Some("full") => &mut psi.full,
            _ => continue,
        };
        seen = true;
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "avg10" => target.avg10 = v.parse().unwrap_or(0.0),
                "avg60" => target.avg60 = v.parse().unwrap_or(0.0),
                "avg300" => target.avg300 = v.parse().unwrap_or(0.0),
                "total" => target.total_us = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    seen.then_some(psi)
}

/// Processes listed in `cgroup.procs` of `dir` and of every cgroup below it.
pub(crate) fn count_procs(dir: &Path) -> u64 {
    let own = fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .unwrap_or(0);
    let children: u64 = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| count_procs(&e.path()))
        .sum();
    own + children
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw shared:6 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu rw shared:7 - cgroup cgroup rw,cpu
29 25 0:26 / /sys/fs/cgroup/memory rw shared:8 - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn hybrid_layout_is_v1_with_unified_extra() {
        let l = Layout::parse(HYBRID);
        assert!(!l.is_v2());
        assert_eq!(l.hierarchies.len(), 5);
        assert_eq!(l.hierarchies[1].name.as_deref(), Some("systemd"));
        assert!(l.hierarchies[0].v2);
        assert_eq!(l.hierarchies[4].controllers, vec!["cpu", "cpuacct"]);
    }

    #[test]
    fn cgroups_path_forms() {
        assert_eq!(resolve_path(None, "c1", false), PathBuf::from("/berth/c1"));
        assert_eq!(
            resolve_path(Some(Path::new("/a/b")), "c1", false),
            PathBuf::from("/a/b")
        );
        assert_eq!(
            resolve_path(Some(Path::new("x")), "c1", false),
            PathBuf::from("/berth/x")
        );
        assert_eq!(
            resolve_path(Some(Path::new("kube.slice:cri:abc")), "c1", true),
            PathBuf::from("/kube.slice/cri-abc.scope")
        );
    }

    #[test]
    fn psi_parses_some_and_full() {
        let p = parse_psi(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
        )
        .expect("psi");
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.avg60, 0.25);
        assert_eq!(p.some.total_us, 12345);
        assert_eq!(p.full.total_us, 7);
        assert!(parse_psi("").is_none());
    }

    #[test]
    fn blkio_v1_and_io_stat_parse_per_device() {
        let v1 = parse_blkio_v1(
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12288\n253:1 Write 512\nTotal 12800\n",
            "8:0 Read 2\n8:0 Write 3\n253:1 Write 1\nTotal 6\n",
        );
        assert_eq!(
            v1,
            vec![
                BlkioDevice {
                    major: 8,
                    minor: 0,
                    read_bytes: 4096,
                    write_bytes: 8192,
                    reads: 2,
                    writes: 3,
                },
                BlkioDevice {
                    major: 253,
                    minor: 1,
                    write_bytes: 512,
                    writes: 1,
                    ..Default::default()
                },
            ]
        );
        let v2 = parse_io_stat("8:16 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(
            v2,
            vec![BlkioDevice {
                major: 8,
                minor: 16,
                read_bytes: 10,
                write_bytes: 20,
                reads: 1,
                writes: 2,
            }]
        );
    }

    #[test]
    fn fd_counts_see_own_sockets() {
        let _sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (fds, sockets) = fd_counts(&[std::process::id() as i32]);
        assert!(sockets >= 1, "{sockets} sockets");
        assert!(fds >= sockets + 3, "{fds} fds");
    }

    #[test]
    fn oom_kill_counter_parses() {
        assert_eq!(
            key_value("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
    }
}
