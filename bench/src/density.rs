//! Many pods with one sleeping container each: what each pod costs the host in memory and processes.
//!
//! A pod's processes are found from the outside, the same way for every runtime: the runtime's helper processes
//! (those whose command line names the runtime's private directory: Berth's `berth-monitor`s, containerd's shims)
//! and all their descendants. The apps (`sleep 3600`) are counted as processes but left out of the runtime's PSS.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::pods::{Images, PAUSE, pod_config, remove_pod, run_pod, sleeper, start_container};
use crate::target::Target;

pub async fn run(pods: usize, rounds: usize) -> Result<()> {
    let images = Images::start()?;
    println!(
        "density: {pods} pods with one `sleep 3600` container each; {rounds} rounds, the runtimes in turn in each"
    );
    let names = Images::runtimes();
    let mut results: Vec<Vec<Density>> = names.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (name, results) in names.iter().zip(&mut results) {
            let target = images.target(name).await?;
            let r = measure(&target, &images, pods).await;
            drop(target);
            let r = r?;
            println!(
                "  {round} {name:<11} {:>5.2} MiB MemAvailable/pod (uncorrected {:.2})  {:.2} MiB runtime PSS/pod \
                 ({})  {:.1} processes/pod ({:.1} runtime + {:.1} app)  daemon PSS +{:.1} MiB  start {:.1} s  \
                 teardown {:.1} s",
                r.mem_available_per_pod,
                r.mem_available_raw,
                r.runtime_pss_per_pod,
                r.runtime_comms,
                r.runtime_procs + r.app_procs,
                r.runtime_procs,
                r.app_procs,
                r.daemon_pss_delta,
                r.start.as_secs_f64(),
                r.teardown.as_secs_f64(),
            );
            results.push(r);
        }
    }
    // Medians over the rounds: other work on the host moves MemAvailable by hundreds of MiB at times.
    let medians: Vec<[f64; 3]> = results
        .iter()
        .map(|rs| {
            [
                median(rs.iter().map(|r| r.mem_available_per_pod)),
                median(rs.iter().map(|r| r.runtime_pss_per_pod)),
                median(rs.iter().map(|r| r.runtime_procs + r.app_procs)),
            ]
        })
        .collect();
    println!("  median over rounds     MemAvailable MiB/pod  runtime PSS MiB/pod  processes/pod");
    for (name, m) in names.iter().zip(&medians) {
        println!("  {name:<22} {:>20.2} {:>20.2} {:>14.1}", m[0], m[1], m[2]);
    }
    if let [b, c] = &medians[..] {
        println!(
            "  {:<22} {:>19.2}x {:>19.2}x {:>13.2}x",
            "ratio containerd/berth",
            c[0] / b[0],
            c[1] / b[1],
            c[2] / b[2]
        );
        println!("  (ratio >1 means berth uses less)");
    }
    Ok(())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

struct Density {
    mem_available_per_pod: f64,
    mem_available_raw: f64,
    runtime_pss_per_pod: f64,
    runtime_comms: String,
    runtime_procs: f64,
    app_procs: f64,
    daemon_pss_delta: f64,
    start: Duration,
    teardown: Duration,
}

async fn measure(target: &Target, images: &Images, n: usize) -> Result<Density> {
    let mut c = target.client().await?;
    let logs = target.dir().join("logs");
    let daemon = target.pid().unwrap_or_default();
    let container = sleeper(&images.busybox);
    // One pod first so one-time costs (bridge, first-use caches) land outside the measurement.
    let config = pod_config("warm", &logs)?;
    let pod = run_pod(&mut c, &config).await?;
    start_container(&mut c, &pod, &config, &container).await?;
    remove_pod(&mut c, &pod).await?;

    settle().await;
    let avail_before = mem_available_kib()?;
    let daemon_before = pss_kib(daemon);

    let t = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let config = pod_config(&format!("dense-{i}"), &logs)?;
        let pod = run_pod(&mut c, &config).await?;
        ids.push(pod.clone());
        start_container(&mut c, &pod, &config, &container).await?;
    }
    let start = t.elapsed();

    settle().await;
    let avail_after = mem_available_kib()?;
    let daemon_after = pss_kib(daemon);
    let procs = pod_processes(&target.dir().to_string_lossy(), daemon);
    let (apps, runtime): (Vec<_>, Vec<_>) = procs.iter().partition(|p| p.cmdline == "sleep 3600");
    let mut comms: HashMap<&str, usize> = HashMap::new();
    for p in &runtime {
        let comm = if p.cmdline == PAUSE { "pause" } else { &p.comm };
        *comms.entry(comm).or_default() += 1;
    }
    let mut comms: Vec<_> = comms
        .into_iter()
        .map(|(k, v)| format!("{:.1} {k}", v as f64 / n as f64))
        .collect();
    comms.sort();

    let t = Instant::now();
    for pod in &ids {
        remove_pod(&mut c, pod).await?;
    }
    let teardown = t.elapsed();
    settle().await;
    let avail_end = mem_available_kib()?;
    let left = pod_processes(&target.dir().to_string_lossy(), daemon).len();
    anyhow::ensure!(
        left == 0,
        "{}: {left} pod processes left after teardown",
        target.name
    );

    let per_pod = |kib: f64| kib / 1024.0 / n as f64;
    Ok(Density {
        // Other work on the host moves MemAvailable too: measure against the mean of the readings taken before
        // the pods started and after they were removed, which cancels a steady drift.
        mem_available_per_pod: per_pod(
            (avail_before + avail_end) as f64 / 2.0 - avail_after as f64,
        ),
        mem_available_raw: per_pod(avail_before as f64 - avail_after as f64),
        runtime_pss_per_pod: per_pod(runtime.iter().map(|p| p.pss_kib).sum::<u64>() as f64),
        runtime_comms: comms.join(" + "),
        runtime_procs: runtime.len() as f64 / n as f64,
        app_procs: apps.len() as f64 / n as f64,
        daemon_pss_delta: (daemon_after as f64 - daemon_before as f64) / 1024.0,
        start,
        teardown,
    })
}

/// Lets exited processes be reaped and freed memory be returned before a reading.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

fn mem_available_kib() -> Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no MemAvailable in /proc/meminfo"))
}

/// Proportional set size of one process (0 when it is gone).
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Proc {
    comm: String,
    cmdline: String,
    pss_kib: u64,
}

/// The runtime's per-pod processes: those (other than the daemon) whose command line contains `dir`, and all
/// their descendants.
fn pod_processes(dir: &str, daemon: u32) -> Vec<Proc> {
    let mut parent = HashMap::new();
    let mut roots = Vec::new();
    let mut info = HashMap::new();
    for pid in std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may itself hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let ppid: u32 = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        if pid != daemon && cmdline.contains(dir) {
            roots.push(pid);
        }
        parent.insert(pid, ppid);
        info.insert(pid, (comm, cmdline));
    }
    let under_root = |mut pid: u32| {
        while pid > 1 {
            if roots.contains(&pid) {
                return true;
            }
            pid = parent.get(&pid).copied().unwrap_or(0);
        }
        false
    };
    info.into_iter()
        .filter(|(pid, _)| under_root(*pid))
        .map(|(pid, (comm, cmdline))| Proc {
            comm,
            cmdline,
            pss_kib: pss_kib(pid),
        })
        .collect()
}
