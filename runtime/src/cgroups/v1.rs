//! Cgroup v1 controller files.

use std::fs;
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{Cgroup, Result, Stats, key_value, read_u64, set};
use crate::error::CgroupError;
use crate::util::serde_name;

/// `mkdir -p` in the cpuset hierarchy, copying `cpus`/`mems` down: a v1 cpuset with empty ones refuses tasks.
pub(super) fn mkdir_cpuset(mount: &Path, dir: &Path) -> Result<()> {
    let mut cur = mount.to_path_buf();
    let rel = dir.strip_prefix(mount).unwrap_or(dir);
    for comp in rel.components() {
        let parent = cur.clone();
        cur.push(comp);
        if !cur.exists() {
            fs::create_dir(&cur)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|source| CgroupError::Io {
                    op: "mkdir",
                    path: cur.clone(),
                    source,
                })?;
        }
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fs::read_to_string(cur.join(f)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = fs::read_to_string(parent.join(f)).unwrap_or_default();
                set(&cur, f, theirs.trim())?;
            }
        }
    }
    Ok(())
}

pub(super) fn apply(controllers: &[String], dir: &Path, res: &LinuxResources) -> Result<()> {
    let has = |c: &str| controllers.iter().any(|x| x == c);
    if has("cpu")
        && let Some(cpu) = res.cpu()
    {
        if let Some(s) = cpu.shares() {
            set(dir, "cpu.shares", &s.to_string())?;
        }
        if let Some(p) = cpu.period() {
            set(dir, "cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(q) = cpu.quota() {
            set(dir, "cpu.cfs_quota_us", &q.to_string())?;
        }
    }
    if has("cpuset")
        && let Some(cpu) = res.cpu()
    {
        if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            set(dir, "cpuset.cpus", c)?;
        }
        if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            set(dir, "cpuset.mems", m)?;
        }
    }
    if has("memory")
        && let Some(mem) = res.memory()
    {
        // The kernel checks limit <= memsw.limit: raise memsw first when growing, the limit first when shrinking.
        let memsw_exists = dir.join("memory.memsw.limit_in_bytes").exists();
        let limit = mem.limit();
        let swap = mem.swap().filter(|_| memsw_exists);
        let cur = read_u64(&dir.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
        let grow = limit.is_some_and(|l| l < 0 || (l as u64) > cur);
        if grow && let Some(s) = swap {
            set(dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
        }
        if let Some(l) = limit {
            set(dir, "memory.limit_in_bytes", &l.to_string())?;
        }
        if !grow && let Some(s) = swap {
            set(dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
        }
        if let Some(r) = mem.reservation() {
            set(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
        }
        if let Some(sw) = mem.swappiness().filter(|s| *s <= 100) {
            // Refused on the root memcg and with cgroup.memory=nosocket kernels; not worth failing a container.
            let _ = set(dir, "memory.swappiness", &sw.to_string());
        }
        if let Some(true) = mem.disable_oom_killer() {
            set(dir, "memory.oom_control", "1")?;
        }
    }
    if has("pids")
        && let Some(p) = res.pids()
    {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".to_string()
        };
        set(dir, "pids.max", &v)?;
    }
    if has("devices")
        && let Some(rules) = res.devices()
    {
        for r in rules {
            let typ = r
                .typ()
                .map(|t| serde_name(&t))
                .unwrap_or_else(|| "a".into());
            let num = |n: Option<i64>| n.map(|v| v.to_string()).unwrap_or_else(|| "*".into());
            let access = r.access().clone().unwrap_or_else(|| "rwm".into());
            let line = if typ == "a" && r.major().is_none() && r.minor().is_none() {
                "a".to_string()
            } else {
                format!("{typ} {}:{} {access}", num(r.major()), num(r.minor()))
            };
            set(
                dir,
                if r.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                },
                &line,
            )?;
        }
        // The default /dev nodes every container gets must stay usable whatever the rules said.
        for line in DEFAULT_ALLOW {
            set(dir, "devices.allow", line)?;
        }
    }
    if has("hugetlb")
        && let Some(limits) = res.hugepage_limits()
    {
        for l in limits {
            set(
                dir,
                &format!("hugetlb.{}.limit_in_bytes", l.page_size()),
                &l.limit().to_string(),
            )?;
        }
    }
    if has("blkio")
        && let Some(b) = res.block_io()
    {
        let files: [(&str, &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>); 4] = [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        for (file, devs) in files {
            for d in devs.iter().flatten() {
                set(
                    dir,
                    file,
                    &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                )?;
            }
        }
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::Unsupported(
            "linux.resources.unified on a cgroup v1 host".into(),
        ));
    }
    Ok(())
}

/// Devices runc allows in every container (null, zero, full, tty, random, urandom, console, ptmx and pts, mknod).
const DEFAULT_ALLOW: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

pub(super) fn stats(cg: &Cgroup) -> Stats {
    let mut s = Stats::default();
    if let Some(d) = cg.dir_of("cpuacct") {
        s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage")).unwrap_or(0);
        let stat = fs::read_to_string(d.join("cpuacct.stat")).unwrap_or_default();
        let tick_ns = clock_tick_ns();
        s.cpu_user_ns = key_value(&stat, "user").unwrap_or(0) * tick_ns;
        s.cpu_system_ns = key_value(&stat, "system").unwrap_or(0) * tick_ns;
    }
    if let Some(d) = cg.dir_of("cpu") {
        let stat = fs::read_to_string(d.join("cpu.stat")).unwrap_or_default();
        s.cpu_periods = key_value(&stat, "nr_periods").unwrap_or(0);
        s.cpu_throttled_periods = key_value(&stat, "nr_throttled").unwrap_or(0);
        s.cpu_throttled_ns = key_value(&stat, "throttled_time").unwrap_or(0);
    }
    if let Some(d) = cg.dir_of("memory") {
        s.memory_usage_bytes = read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0);
        let stat = fs::read_to_string(d.join("memory.stat")).unwrap_or_default();
        let stat_of = |k: &str| key_value(&stat, k).unwrap_or(0);
        s.memory_inactive_file_bytes = stat_of("total_inactive_file");
        s.memory_active_file_bytes = stat_of("total_active_file");
        s.memory_working_set_bytes = s
            .memory_usage_bytes
            .saturating_sub(s.memory_inactive_file_bytes);
        s.memory_rss_bytes = stat_of("total_rss");
        s.memory_cache_bytes = stat_of("total_cache");
        s.memory_mapped_file_bytes = stat_of("total_mapped_file");
        s.page_faults = stat_of("total_pgfault");
        s.major_page_faults = stat_of("total_pgmajfault");
        s.memory_max_usage_bytes = read_u64(&d.join("memory.max_usage_in_bytes")).unwrap_or(0);
        s.memory_failcnt = read_u64(&d.join("memory.failcnt")).unwrap_or(0);
        let limit = read_u64(&d.join("memory.limit_in_bytes")).filter(|l| !unlimited(*l));
        s.memory_limit_bytes = limit;
        if let Some(memsw) = read_u64(&d.join("memory.memsw.usage_in_bytes")) {
            s.swap_usage_bytes = Some(memsw.saturating_sub(s.memory_usage_bytes));
            s.swap_limit_bytes = read_u64(&d.join("memory.memsw.limit_in_bytes"))
                .filter(|l| !unlimited(*l))
                .map(|l| l.saturating_sub(limit.unwrap_or(0)));
        }
        s.oom_kills = super::oom_kill_count(Some(&d.join("memory.oom_control")));
        s.memory_kernel_bytes = read_u64(&d.join("memory.kmem.usage_in_bytes")).unwrap_or(0);
    }
    if let Some(d) = cg.dir_of("blkio") {
        // The recursive files (kernels since 4.x) include the cgroups below; the plain ones are the fallback.
        let read = |f: &str| {
            fs::read_to_string(d.join(format!("{f}_recursive")))
                .or_else(|_| fs::read_to_string(d.join(f)))
                .unwrap_or_default()
        };
        s.blkio = super::parse_blkio_v1(
            &read("blkio.throttle.io_service_bytes"),
            &read("blkio.throttle.io_serviced"),
        );
    }
    if let Some(d) = cg.dir_of("pids") {
        s.pids_limit = read_u64(&d.join("pids.max"));
    }
    if let Some(d) = cg
        .dir_of("pids")
        .or_else(|| cg.dir_of("memory"))
        .or_else(|| cg.dirs.first().map(|(_, d)| d.as_path()))
    {
        s.processes = super::count_procs(d);
        s.threads = read_u64(&d.join("pids.current"))
            .unwrap_or_else(|| super::count_lines_recursive(d, "tasks"));
        (s.file_descriptors, s.sockets) = super::fd_counts(&super::all_procs(d));
    }
    s
}

/// v1 reports "no limit" as the largest page-aligned counter (9223372036854771712), or near it.
fn unlimited(v: u64) -> bool {
    v >= 1 << 62
}

/// Nanoseconds per USER_HZ tick, the unit of `cpuacct.stat`.
fn clock_tick_ns() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}
