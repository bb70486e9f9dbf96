//! Cgroup v2 (unified hierarchy) files.

use std::fs;
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{Cgroup, Result, Stats, key_value, read_u64, set};
use crate::error::CgroupError;

/// `mkdir -p`, enabling in each ancestor's `cgroup.subtree_control` the controllers its parent offers.
pub(super) fn mkdir_enabling(mount: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(mount).unwrap_or(dir);
    let mut cur = mount.to_path_buf();
    for comp in rel.components() {
        let offered = fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> = offered
            .split_whitespace()
            .map(|c| format!("+{c}"))
            .collect();
        if !enable.is_empty() {
            // Best effort: a controller may be held back by the parent's own processes.
            let _ = set(&cur, "cgroup.subtree_control", &enable.join(" "));
        }
        cur.push(comp);
        if let Err(e) = fs::create_dir(&cur)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(CgroupError::Io {
                op: "mkdir",
                path: cur,
                source: e,
            });
        }
    }
    Ok(())
}

/// cpu.shares (2..262144) to cpu.weight (1..10000), the conversion runc and crun use.
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
    }
}

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<()> {
    if let Some(cpu) = res.cpu() {
        if let Some(s) = cpu.shares().filter(|s| *s > 0) {
            set(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        if cpu.quota().is_some() || cpu.period().is_some() {
            let q = match cpu.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            let p = cpu.period().unwrap_or(100_000);
            set(dir, "cpu.max", &format!("{q} {p}"))?;
        }
        if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            set(dir, "cpuset.cpus", c)?;
        }
        if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            set(dir, "cpuset.mems", m)?;
        }
    }
    if let Some(mem) = res.memory() {
        let lim = |v: i64| {
            if v < 0 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        if let Some(l) = mem.limit() {
            set(dir, "memory.max", &lim(l))?;
            // v1 semantics: swap is memory+swap; v2 wants swap alone.
            if let Some(s) = mem.swap() {
                let swap = if s < 0 || l < 0 {
                    "max".to_string()
                } else {
                    (s - l).max(0).to_string()
                };
                set(dir, "memory.swap.max", &swap)?;
            }
        }
        if let Some(r) = mem.reservation() {
            set(dir, "memory.low", &lim(r))?;
        }
    }
    if let Some(p) = res.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".to_string()
        };
        set(dir, "pids.max", &v)?;
    }
    if let Some(u) = res.unified() {
        for (k, v) in u {
            if k.contains('/') {
                return Err(CgroupError::Unsupported(format!("unified key {k}")));
            }
            set(dir, k, v)?;
        }
    }
    if let Some(rules) = res.devices() {
        // Allow-everything rule sets need no program.
        if rules.iter().any(|r| !r.allow()) {
            let mut all = rules.clone();
            all.extend(default_allow());
            super::bpf_devices::apply(dir, &all)?;
        }
    }
    Ok(())
}

pub(super) fn stats(cg: &Cgroup) -> Stats {
    let mut s = Stats::default();
    let Some((_, d)) = cg.dirs.first() else {
        return s;
    };
    let cpu = fs::read_to_string(d.join("cpu.stat")).unwrap_or_default();
    let cpu_of = |k: &str| key_value(&cpu, k).unwrap_or(0);
    s.cpu_usage_ns = cpu_of("usage_usec") * 1000;
    s.cpu_user_ns = cpu_of("user_usec") * 1000;
    s.cpu_system_ns = cpu_of("system_usec") * 1000;
    s.cpu_periods = cpu_of("nr_periods");
    s.cpu_throttled_periods = cpu_of("nr_throttled");
    s.cpu_throttled_ns = cpu_of("throttled_usec") * 1000;
    s.memory_usage_bytes = read_u64(&d.join("memory.current")).unwrap_or(0);
    let stat = fs::read_to_string(d.join("memory.stat")).unwrap_or_default();
    let stat_of = |k: &str| key_value(&stat, k).unwrap_or(0);
    s.memory_inactive_file_bytes = stat_of("inactive_file");
    s.memory_active_file_bytes = stat_of("active_file");
    s.memory_working_set_bytes = s
        .memory_usage_bytes
        .saturating_sub(s.memory_inactive_file_bytes);
    s.memory_rss_bytes = stat_of("anon");
    s.memory_cache_bytes = stat_of("file");
    s.memory_mapped_file_bytes = stat_of("file_mapped");
    s.page_faults = stat_of("pgfault");
    s.major_page_faults = stat_of("pgmajfault");
    s.memory_max_usage_bytes = read_u64(&d.join("memory.peak")).unwrap_or(0);
    // "max" does not parse: no limit.
    s.memory_limit_bytes = read_u64(&d.join("memory.max"));
    s.swap_usage_bytes = read_u64(&d.join("memory.swap.current"));
    s.swap_limit_bytes = read_u64(&d.join("memory.swap.max"));
    s.oom_kills = super::oom_kill_count(Some(&d.join("memory.events")));
    s.pids_limit = read_u64(&d.join("pids.max"));
    s.processes = super::count_procs(d);
    s.threads = read_u64(&d.join("pids.current"))
        .unwrap_or_else(|| super::count_lines_recursive(d, "cgroup.threads"));
    (s.file_descriptors, s.sockets) = super::fd_counts(&super::all_procs(d));
    s.blkio = super::parse_io_stat(&fs::read_to_string(d.join("io.stat")).unwrap_or_default());
    // `kernel` since Linux 5.18; before it, the kernel-side entries it sums.
    s.memory_kernel_bytes = key_value(&stat, "kernel").unwrap_or_else(|| {
        ["kernel_stack", "pagetables", "percpu", "sock", "slab"]
            .iter()
            .map(|k| stat_of(k))
            .sum()
    });
    s.cpu_psi = super::read_psi(&d.join("cpu.pressure"));
    s.memory_psi = super::read_psi(&d.join("memory.pressure"));
    s.io_psi = super::read_psi(&d.join("io.pressure"));
    s
}

/// The devices every container keeps (null, zero, full, random, urandom, tty, console, ptmx, pts), as on v1.
fn default_allow() -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    let rules = r#"[
        {"allow": true, "type": "c", "access": "m"}, {"allow": true, "type": "b", "access": "m"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"}
    ]"#;
    serde_json::from_str(rules).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_device_rules_parse() {
        assert_eq!(super::default_allow().len(), 11);
    }

    #[test]
    fn shares_map_like_runc() {
        assert_eq!(super::shares_to_weight(2), 1);
        assert_eq!(super::shares_to_weight(1024), 39);
        assert_eq!(super::shares_to_weight(262_144), 10_000);
    }
}
