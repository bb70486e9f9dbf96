//! Stats and metrics end to end: what the kubelet's CRI stats provider and `/metrics/cadvisor` read, from a real
//! daemon running real containers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use berth_cri::api::*;
use berth_tests::kubelet::{self, Env, env, run_pod};

/// The kubelet-shaped config, with an annotation to check the stats attributes carry it.
fn container_config(env: &Env, name: &str, args: &[&str]) -> ContainerConfig {
    let mut config = kubelet::container_config(env, name, args);
    config.annotations = HashMap::from([("note".into(), format!("{name}-note"))]);
    config
}

/// Creates and starts container `name` running `args` in `pod`.
async fn run_container(
    env: &mut Env,
    pod: &(String, PodSandboxConfig),
    name: &str,
    args: &[&str],
) -> String {
    let config = container_config(env, name, args);
    run(env, pod, config).await
}

/// Creates and starts a container from `config` in `pod`.
async fn run(env: &mut Env, pod: &(String, PodSandboxConfig), config: ContainerConfig) -> String {
    let id = kubelet::create(env, pod, config).await.unwrap();
    kubelet::start(env, &id).await;
    id
}

async fn exec(env: &mut Env, id: &str, cmd: &[&str]) -> ExecSyncResponse {
    kubelet::exec(env, id, cmd, 20).await.unwrap()
}

async fn container_stats(env: &mut Env, id: &str) -> ContainerStats {
    env.c
        .runtime
        .container_stats(ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

async fn list_container_stats(env: &mut Env, filter: ContainerStatsFilter) -> Vec<String> {
    let mut ids: Vec<String> = env
        .c
        .runtime
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    ids.sort();
    ids
}

async fn pod_stats(env: &mut Env, id: &str) -> PodSandboxStats {
    env.c
        .runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

async fn list_pod_stats(env: &mut Env, filter: Option<PodSandboxStatsFilter>) -> Vec<String> {
    let mut ids: Vec<String> = env
        .c
        .runtime
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter })
        .await
        .unwrap()
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    ids.sort();
    ids
}

fn value(v: &Option<UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

/// Every message of a server stream.
async fn collect<T>(mut s: tonic::Streaming<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(item) = s.message().await.unwrap() {
        out.push(item);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_container_uses_cpu_and_memory_and_its_writes_grow_the_writable_layer() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "busy").await;
    let spin = run_container(&mut env, &pod, "spin", &["sh", "-c", "while :; do :; done"]).await;
    let mut limited = container_config(&env, "idle", &["sleep", "3600"]);
    limited.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let idle = run(&mut env, &pod, limited).await;

    // Two samples a second apart: the first gives cumulative usage, the second also a rate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = container_stats(&mut env, &spin).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = container_stats(&mut env, &spin).await;
    let (cpu1, cpu2) = (first.cpu.unwrap(), second.cpu.unwrap());
    assert!(value(&cpu1.usage_core_nano_seconds) > 0, "{cpu1:?}");
    assert!(
        value(&cpu2.usage_core_nano_seconds) > value(&cpu1.usage_core_nano_seconds),
        "{cpu1:?} {cpu2:?}"
    );
    assert!(cpu2.timestamp > cpu1.timestamp);
    // A busy loop on a shared two-core machine: well above a hundredth of a core, at most every core.
    let nano_cores = value(&cpu2.usage_nano_cores);
    assert!(
        nano_cores > 10_000_000 && nano_cores < 64_000_000_000,
        "{cpu2:?}"
    );
    let mem = second.memory.unwrap();
    assert!(value(&mem.working_set_bytes) > 0, "{mem:?}");
    assert!(
        value(&mem.usage_bytes) >= value(&mem.working_set_bytes),
        "{mem:?}"
    );
    assert!(mem.rss_bytes.is_some() && mem.major_page_faults.is_some());
    // The shell faulted its pages in after joining the cgroup.
    assert!(value(&mem.page_faults) > 0, "{mem:?}");
    // No memory limit was set: nothing is "available" below one.
    assert_eq!(mem.available_bytes, None);
    let attrs = second.attributes.unwrap();
    assert_eq!(attrs.id, spin);
    assert_eq!(attrs.metadata.unwrap().name, "spin");
    assert_eq!(
        attrs.labels.get("container").map(String::as_str),
        Some("spin")
    );
    assert_eq!(
        attrs.annotations.get("note").map(String::as_str),
        Some("spin-note")
    );

    // The idle container is barely on the CPU.
    // The idle container has a limit: what is left below it is available.
    let quiet = container_stats(&mut env, &idle).await;
    assert!(quiet.cpu.is_some());
    let mem = quiet.memory.unwrap();
    let available = value(&mem.available_bytes);
    assert!(
        available > 0 && available + value(&mem.working_set_bytes) == 64 << 20,
        "{mem:?}"
    );

    // Writing 4 MiB into the rootfs grows the writable layer by as much, and by a file.
    let before = container_stats(&mut env, &idle)
        .await
        .writable_layer
        .unwrap();
    assert!(!before.fs_id.as_ref().unwrap().mountpoint.is_empty());
    let out = exec(
        &mut env,
        &idle,
        &[
            "dd",
            "if=/dev/zero",
            "of=/grown.bin",
            "bs=1024",
            "count=4096",
        ],
    )
    .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let after = container_stats(&mut env, &idle)
        .await
        .writable_layer
        .unwrap();
    assert!(
        value(&after.used_bytes) >= value(&before.used_bytes) + (4 << 20),
        "{before:?} -> {after:?}"
    );
    assert!(value(&after.inodes_used) > value(&before.inodes_used));
    // ImageFsInfo's container filesystem is the one the writable layers live on.
    let fs = env
        .c
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fs.container_filesystems[0].fs_id, after.fs_id);

    // Filters: id prefix, pod id prefix, labels; and the stream answers like the list.
    let mut both = vec![spin.clone(), idle.clone()];
    both.sort();
    let by_id = ContainerStatsFilter {
        id: spin[..12].into(),
        ..Default::default()
    };
    assert_eq!(
        list_container_stats(&mut env, by_id).await,
        vec![spin.clone()]
    );
    let by_pod = ContainerStatsFilter {
        pod_sandbox_id: pod.0[..12].into(),
        ..Default::default()
    };
    assert_eq!(list_container_stats(&mut env, by_pod).await, both);
    let by_label = ContainerStatsFilter {
        label_selector: HashMap::from([("container".into(), "idle".into())]),
        ..Default::default()
    };
    assert_eq!(
        list_container_stats(&mut env, by_label).await,
        vec![idle.clone()]
    );
    let nobody = ContainerStatsFilter {
        pod_sandbox_id: "no-such-pod".into(),
        ..Default::default()
    };
    assert!(list_container_stats(&mut env, nobody).await.is_empty());
    assert_eq!(
        list_container_stats(&mut env, ContainerStatsFilter::default()).await,
        both
    );
    let pages = collect(
        env.c
            .runtime
            .stream_container_stats(StreamContainerStatsRequest { filter: None })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let mut streamed: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.container_stats)
        .map(|s| s.attributes.unwrap().id)
        .collect();
    streamed.sort();
    assert_eq!(streamed, both);

    // An exited container keeps its writable layer but has no CPU or memory to report.
    env.c
        .runtime
        .stop_container(StopContainerRequest {
            container_id: spin.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let stopped = container_stats(&mut env, &spin).await;
    assert!(
        stopped.cpu.is_none() && stopped.memory.is_none(),
        "{stopped:?}"
    );
    assert!(stopped.writable_layer.is_some());

    // Unknown ids.
    let err = env
        .c
        .runtime
        .container_stats(ContainerStatsRequest {
            container_id: "no-such-container".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = env
        .c
        .runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: "no-such-pod".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_stats_count_network_traffic_processes_and_metrics_use_cadvisor_names() {
    let mut env = env().await;
    let pod = run_pod(&mut env, "talker").await;
    let other = run_pod(&mut env, "quiet").await;
    let ctr = run_container(
        &mut env,
        &pod,
        "app",
        &["sh", "-c", "sleep 3600 & sleep 3600 & wait"],
    )
    .await;
    let ip = env
        .c
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.0.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip;
    assert!(!ip.is_empty());

    // Wait for sh to have started its two sleeps.
    let mut before = pod_stats(&mut env, &pod.0).await;
    for _ in 0..100 {
        let procs = before.linux.as_ref().and_then(|l| l.process);
        if procs.is_some_and(|p| value(&p.process_count) >= 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        before = pod_stats(&mut env, &pod.0).await;
    }
    let attrs = before.attributes.clone().unwrap();
    assert_eq!(attrs.id, pod.0);
    assert_eq!(attrs.metadata.unwrap().name, "talker");
    assert_eq!(attrs.labels.get("app").map(String::as_str), Some("talker"));
    let linux = before.linux.clone().unwrap();
    assert!(
        value(&linux.cpu.as_ref().unwrap().usage_core_nano_seconds) > 0,
        "{linux:?}"
    );
    assert!(
        value(&linux.memory.as_ref().unwrap().working_set_bytes) > 0,
        "{linux:?}"
    );
    // sh and its two sleeps.
    assert!(
        value(&linux.process.as_ref().unwrap().process_count) >= 3,
        "{linux:?}"
    );
    assert_eq!(linux.containers.len(), 1);
    assert_eq!(linux.containers[0].attributes.as_ref().unwrap().id, ctr);
    let net0 = linux.network.unwrap();
    let eth0 = net0.default_interface.clone().unwrap();
    assert_eq!(eth0.name, "eth0");
    assert!(net0.interfaces.iter().any(|i| i.name == "eth0"));
    assert!(!net0.interfaces.iter().any(|i| i.name == "lo"));

    // Traffic from the host to the pod: 20 KiB of datagrams in, and resets to refused connections out.
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    for _ in 0..20 {
        sock.send_to(&[7u8; 1024], (ip.as_str(), 9)).unwrap();
    }
    for _ in 0..3 {
        let _ = std::net::TcpStream::connect_timeout(
            &format!("{ip}:1").parse().unwrap(),
            Duration::from_secs(2),
        );
    }
    let mut after = eth0.clone();
    for _ in 0..50 {
        after = pod_stats(&mut env, &pod.0)
            .await
            .linux
            .unwrap()
            .network
            .unwrap()
            .default_interface
            .unwrap();
        if value(&after.rx_bytes) >= value(&eth0.rx_bytes) + 20 * 1024
            && value(&after.tx_bytes) > value(&eth0.tx_bytes)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        value(&after.rx_bytes) >= value(&eth0.rx_bytes) + 20 * 1024,
        "{eth0:?} -> {after:?}"
    );
    assert!(
        value(&after.tx_bytes) > value(&eth0.tx_bytes),
        "{eth0:?} -> {after:?}"
    );
    assert!(after.rx_errors.is_some() && after.tx_errors.is_some());

    // The pod's CPU rate comes from two samples too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = pod_stats(&mut env, &pod.0)
        .await
        .linux
        .unwrap()
        .cpu
        .unwrap();
    assert!(cpu.usage_nano_cores.is_some(), "{cpu:?}");

    // ListPodSandboxStats: every ready pod, filtered by id prefix or labels; the stream says the same.
    let mut both = vec![pod.0.clone(), other.0.clone()];
    both.sort();
    assert_eq!(list_pod_stats(&mut env, None).await, both);
    let by_id = PodSandboxStatsFilter {
        id: other.0[..12].into(),
        ..Default::default()
    };
    assert_eq!(
        list_pod_stats(&mut env, Some(by_id)).await,
        vec![other.0.clone()]
    );
    let by_label = PodSandboxStatsFilter {
        label_selector: HashMap::from([("app".into(), "talker".into())]),
        ..Default::default()
    };
    assert_eq!(
        list_pod_stats(&mut env, Some(by_label)).await,
        vec![pod.0.clone()]
    );
    let pages = collect(
        env.c
            .runtime
            .stream_pod_sandbox_stats(StreamPodSandboxStatsRequest { filter: None })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let mut streamed: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.pod_sandbox_stats)
        .map(|s| s.attributes.unwrap().id)
        .collect();
    streamed.sort();
    assert_eq!(streamed, both);

    // Metric descriptors: cAdvisor's names, containerd's label keys.
    let descriptors = env
        .c
        .runtime
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    let keys: HashMap<String, Vec<String>> = descriptors
        .into_iter()
        .map(|d| (d.name, d.label_keys))
        .collect();
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_rss",
        "container_memory_usage_bytes",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
        "container_processes",
        "container_fs_usage_bytes",
    ] {
        assert!(keys.contains_key(name), "{name} not described: {keys:?}");
    }
    assert_eq!(keys["container_memory_rss"], vec!["id", "name"]);
    assert_eq!(
        keys["container_network_receive_bytes_total"],
        vec!["id", "name", "interface"]
    );

    // Pod metrics: network per interface at the pod level, cgroup figures per container.
    let metrics = env
        .c
        .runtime
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let ids: HashSet<&str> = metrics.iter().map(|m| m.pod_sandbox_id.as_str()).collect();
    assert_eq!(ids, HashSet::from([pod.0.as_str(), other.0.as_str()]));
    let mine = metrics.iter().find(|m| m.pod_sandbox_id == pod.0).unwrap();
    for m in mine
        .metrics
        .iter()
        .chain(mine.container_metrics.iter().flat_map(|c| &c.metrics))
    {
        assert_eq!(
            keys.get(&m.name).map(Vec::len),
            Some(m.label_values.len()),
            "{m:?} does not match its descriptor"
        );
    }
    let rx = mine
        .metrics
        .iter()
        .find(|m| m.name == "container_network_receive_bytes_total" && m.label_values[2] == "eth0")
        .unwrap();
    assert_eq!(rx.label_values[..2], [pod.0.clone(), "talker".to_string()]);
    assert!(value(&rx.value) >= 20 * 1024, "{rx:?}");
    assert_eq!(rx.metric_type, MetricType::Counter as i32);
    assert_eq!(mine.container_metrics.len(), 1);
    let cm = &mine.container_metrics[0];
    assert_eq!(cm.container_id, ctr);
    let find = |name: &str| {
        cm.metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {cm:?}"))
    };
    assert_eq!(
        find("container_memory_working_set_bytes").label_values,
        vec![ctr.clone(), "app".into()]
    );
    assert!(value(&find("container_memory_working_set_bytes").value) > 0);
    assert!(value(&find("container_processes").value) >= 3);
    assert_eq!(
        find("container_memory_usage_bytes").metric_type,
        MetricType::Gauge as i32
    );
    find("container_cpu_usage_seconds_total");
    find("container_fs_usage_bytes");
    // Threads, descriptors and times read live from the cgroup's processes; the spec from the container's config.
    let procs = value(&find("container_processes").value);
    assert!(value(&find("container_threads").value) >= procs);
    assert!(value(&find("container_file_descriptors").value) >= procs);
    find("container_sockets");
    find("container_memory_kernel_usage");
    let seen = value(&find("container_last_seen").value);
    let started = value(&find("container_start_time_seconds").value);
    assert!(started > 0 && started <= seen, "{started} {seen}");
    assert!(value(&find("container_spec_cpu_period").value) > 0);
    assert!(value(&find("container_spec_cpu_shares").value) > 0);
    find("container_spec_memory_swap_limit_bytes");

    let pages = collect(
        env.c
            .runtime
            .stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let streamed: HashSet<String> = pages
        .into_iter()
        .flat_map(|p| p.pod_sandbox_metrics)
        .map(|m| m.pod_sandbox_id)
        .collect();
    assert_eq!(streamed, HashSet::from([pod.0.clone(), other.0.clone()]));

    // A stopped pod is no longer listed, but can still be asked about (without usage figures).
    env.c
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: other.0.clone(),
        })
        .await
        .unwrap();
    assert_eq!(list_pod_stats(&mut env, None).await, vec![pod.0.clone()]);
    let stopped = pod_stats(&mut env, &other.0).await;
    let linux = stopped.linux.unwrap();
    assert!(linux.cpu.is_none() && linux.network.is_none(), "{linux:?}");
}
