//! `update [--resources FILE|-] [--memory N] [--pids-limit N] [--cpu-shares N] [--cpu-quota N] [--cpu-period N]
//! [--cpuset-cpus L] [--cpuset-mems L] ID`: new cgroup limits (containerd passes `--resources -` with JSON on stdin).

use std::io::Read;

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::{Args, Globals, e};

pub fn run(g: &Globals, argv: &[String]) -> Result<i32, String> {
    let a = Args::parse(
        argv,
        &[
            "--resources",
            "-r",
            "--memory",
            "--memory-swap",
            "--pids-limit",
            "--cpu-shares",
            "--cpu-quota",
            "--cpu-period",
            "--cpuset-cpus",
            "--cpuset-mems",
        ],
    );
    let id = a.id()?;
    let mut res: LinuxResources = match a.value(&["--resources", "-r"]) {
        Some(f) => {
            let mut data = Vec::new();
            if f == "-" {
                std::io::stdin()
                    .read_to_end(&mut data)
                    .map_err(|x| format!("read stdin: {x}"))?;
            } else {
                data = std::fs::read(&f).map_err(|x| format!("read {f}: {x}"))?;
            }
            serde_json::from_slice(&data).map_err(|x| format!("parse resources: {x}"))?
        }
        None => LinuxResources::default(),
    };
    let num = |k: &str| -> Result<Option<i64>, String> {
        a.value(&[k])
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{k}: not a number: {v}"))
            })
            .transpose()
    };
    if num("--memory")?.is_some() || num("--memory-swap")?.is_some() {
        let mut m: LinuxMemory = (*res.memory()).unwrap_or_default();
        if let Some(v) = num("--memory")? {
            m.set_limit(Some(v));
        }
        if let Some(v) = num("--memory-swap")? {
            m.set_swap(Some(v));
        }
        res.set_memory(Some(m));
    }
    if let Some(v) = num("--pids-limit")? {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        res.set_pids(Some(p));
    }
    let cpu_flags = [
        "--cpu-shares",
        "--cpu-quota",
        "--cpu-period",
        "--cpuset-cpus",
        "--cpuset-mems",
    ];
    if cpu_flags.iter().any(|f| a.value(&[f]).is_some()) {
        let mut c: LinuxCpu = res.cpu().clone().unwrap_or_default();
        if let Some(v) = num("--cpu-shares")? {
            c.set_shares(Some(v as u64));
        }
        if let Some(v) = num("--cpu-quota")? {
            c.set_quota(Some(v));
        }
        if let Some(v) = num("--cpu-period")? {
            c.set_period(Some(v as u64));
        }
        if let Some(v) = a.value(&["--cpuset-cpus"]) {
            c.set_cpus(Some(v));
        }
        if let Some(v) = a.value(&["--cpuset-mems"]) {
            c.set_mems(Some(v));
        }
        res.set_cpu(Some(c));
    }
    crate::container::update(&g.root, &id, &res).map_err(e)?;
    Ok(0)
}
