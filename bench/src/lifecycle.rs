//! One pod at a time through the whole kubelet flow, each step timed separately: medians per runtime and the
//! containerd/berth ratio.

use std::time::{Duration, Instant};

use anyhow::Result;
use berth_cri::api::{
    ExecSyncRequest, PodSandboxStatusRequest, RemoveContainerRequest, StopContainerRequest,
};
use berth_cri::client::Client;

use crate::Stats;
use crate::pods::{Images, pod_config, remove_pod, run_pod, sleeper, start_container};
use crate::target::Target;

const STEPS: [&str; 5] = [
    "RunPodSandbox",
    "CreateContainer+StartContainer",
    "ExecSync (true)",
    "StopContainer+RemoveContainer",
    "StopPodSandbox+RemovePodSandbox",
];

pub async fn run(runs: usize) -> Result<()> {
    let images = Images::start()?;
    println!(
        "lifecycle: {runs} runs per runtime after 1 warm-up, runtimes alternating run by run; median wall-clock ms \
         per CRI step (StopContainer timeout 0: `sleep` as PID 1 ignores SIGTERM)"
    );
    let mut runtimes = Vec::new();
    for name in Images::runtimes() {
        let target = images.target(name).await?;
        let client = target.client().await?;
        runtimes.push((target, client, <[Stats; 5]>::default()));
    }
    // Alternate the runtimes so load from other work on the host hits both alike.
    for i in 0..=runs {
        for (target, c, stats) in &mut runtimes {
            let times = one_run(target, c, &images.busybox, i).await?;
            // The first run pays for first-time work (bridge creation, caches); leave it out.
            if i > 0 {
                for (s, t) in stats.iter_mut().zip(times) {
                    s.push(t);
                }
            }
        }
    }
    for (target, _, stats) in &runtimes {
        println!("  {}:", target.name);
        for (step, s) in STEPS.iter().zip(stats) {
            println!("    {step:<33} {:>7.1}   (runs: {})", ms(s), s.list());
        }
    }
    if let [(_, _, berth), (_, _, containerd)] = &runtimes[..] {
        println!(
            "  {:<33} {:>9} {:>11} {:>7}",
            "median ms", "berth", "containerd", "ratio"
        );
        let (mut sb, mut sc) = (0.0, 0.0);
        for ((step, b), c) in STEPS.iter().zip(berth).zip(containerd) {
            let (b, c) = (ms(b), ms(c));
            sb += b;
            sc += c;
            println!("  {step:<33} {b:>9.1} {c:>11.1} {:>6.2}x", c / b);
        }
        println!(
            "  {:<33} {sb:>9.1} {sc:>11.1} {:>6.2}x",
            "sum of medians",
            sc / sb
        );
        println!("  (ratio = containerd/berth: >1 means berth is faster)");
    }
    Ok(())
}

/// One pod through the five steps; their times.
async fn one_run(target: &Target, c: &mut Client, image: &str, i: usize) -> Result<[Duration; 5]> {
    let name = target.name;
    let config = pod_config(&format!("life-{i}"), &target.dir().join("logs"))?;
    let mut times = [Duration::ZERO; 5];

    let t = Instant::now();
    let pod = run_pod(c, &config).await?;
    times[0] = t.elapsed();
    if i == 0 {
        // Both runtimes must do the same job: a pod network with an address from the private bridge.
        let ip = pod_ip(c, &pod).await?;
        anyhow::ensure!(!ip.is_empty(), "{name}: the pod got no IP");
        println!("  {name}: pods get IPs such as {ip}");
    }

    let t = Instant::now();
    let ctr = start_container(c, &pod, &config, &sleeper(image)).await?;
    times[1] = t.elapsed();

    let t = Instant::now();
    let exec = c
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: vec!["true".into()],
            timeout: 10,
        })
        .await?
        .into_inner();
    times[2] = t.elapsed();
    anyhow::ensure!(
        exec.exit_code == 0,
        "{name}: exec `true` exited {}",
        exec.exit_code
    );

    let t = Instant::now();
    c.runtime
        .stop_container(StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 0,
        })
        .await?;
    c.runtime
        .remove_container(RemoveContainerRequest { container_id: ctr })
        .await?;
    times[3] = t.elapsed();

    let t = Instant::now();
    remove_pod(c, &pod).await?;
    times[4] = t.elapsed();
    Ok(times)
}

fn ms(s: &Stats) -> f64 {
    s.median().as_secs_f64() * 1e3
}

async fn pod_ip(c: &mut Client, pod: &str) -> Result<String> {
    let status = c
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: false,
        })
        .await?
        .into_inner();
    Ok(status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default())
}
