//! Stats and metrics RPCs: `ContainerStats`, `PodSandboxStats` (and their List/Stream twins), `ListMetricDescriptors`
//! and `ListPodSandboxMetrics`.
//!
//! Where the figures come from:
//! * CPU, memory, processes: the cgroup, through the runtime handler for a container and directly for the pod's
//!   `cgroup_parent` (every hierarchy Berth uses counts its children, so the pod cgroup sums its containers).
//! * `usage_nano_cores`: a rate, so it needs two samples. The previous CPU sample of every container and pod is kept
//!   in memory ([`CpuSamples`], as containerd does) and the rate is computed against it; the first call for a
//!   container reports none.
//! * The writable layer: the snapshotter's usage of the container's own snapshot (its overlay upper dir), on the
//!   filesystem `ImageFsInfo` reports as `container_filesystems`, so the kubelet can match the two.
//! * Pod network: `/proc/thread-self/net/dev` read by a short-lived thread that joined the pod's pinned network
//!   namespace (a thread may switch its own network namespace; it exits afterwards, so the switch never leaks into
//!   a thread the daemon reuses).
//! * Metrics: the same figures under cAdvisor's names, with containerd's label keys (`id`, `name`, plus
//!   `interface` or `device`; block I/O per device adds cAdvisor's `major`, `minor`, `operation`). Block I/O,
//!   kernel memory, threads and the open descriptors and sockets of the cgroup's processes come from the cgroup
//!   too; the `container_spec_*` CPU period, shares and swap limit from the container's CRI config.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use berth_runtime::cgroups::{Cgroup, Layout, Psi, Stats};
use berth_runtime::handler::Phase;
use tonic::Status;

use super::{Berth, internal};
use crate::api::*;
use crate::container::{ContainerRecord, ContainerState as RecState};
use crate::pod::{PodPaths, PodRecord, PodState, labels_match, now_nanos};

/// Samples closer together than this give no new rate: the last one computed is reported again.
const MIN_RATE_WINDOW_NS: i64 = 100_000_000;

/// The interface CNI gives every pod (`CNI_IFNAME`), reported as the pod's default interface.
const DEFAULT_INTERFACE: &str = "eth0";

/// The previous CPU sample of each container and pod, for `usage_nano_cores`.
#[derive(Default)]
pub(crate) struct CpuSamples {
    samples: Mutex<HashMap<String, CpuSample>>,
}

#[derive(Clone, Copy, Debug)]
struct CpuSample {
    at: i64,
    usage_ns: u64,
    nano_cores: Option<u64>,
}

impl CpuSamples {
    /// The CPU rate in nanocores between the kept sample of `key` and this one (`usage_ns` at time `at`, both ns);
    /// `None` for the first sample. This sample becomes the kept one.
    fn nano_cores(&self, key: &str, at: i64, usage_ns: u64) -> Option<u64> {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = CpuSample {
            at,
            usage_ns,
            nano_cores: None,
        };
        let Some(prev) = samples.get_mut(key) else {
            samples.insert(key.to_string(), fresh);
            return None;
        };
        if usage_ns < prev.usage_ns || at < prev.at {
            // The counter went back: a new cgroup under the same id. Start over.
            *prev = fresh;
            return None;
        }
        let dt = at - prev.at;
        if dt < MIN_RATE_WINDOW_NS {
            return prev.nano_cores;
        }
        let rate = ((usage_ns - prev.usage_ns) as u128 * 1_000_000_000 / dt as u128) as u64;
        *prev = CpuSample {
            at,
            usage_ns,
            nano_cores: Some(rate),
        };
        Some(rate)
    }

    /// Forgets the samples of containers and pods that no longer exist.
    fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.retain(|k, _| keep(k));
    }
}

fn pod_key(id: &str) -> String {
    format!("pod/{id}")
}

fn u64v(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

fn psi(p: Option<Psi>) -> Option<PsiStats> {
    let line = |l: berth_runtime::cgroups::PsiLine| PsiData {
        // The kernel counts stalls in microseconds; the CRI wants nanoseconds.
        total: l.total_us.saturating_mul(1000),
        avg10: l.avg10,
        avg60: l.avg60,
        avg300: l.avg300,
    };
    p.map(|p| PsiStats {
        full: Some(line(p.full)),
        some: Some(line(p.some)),
    })
}

fn cpu_usage(s: &Stats, at: i64, nano_cores: Option<u64>) -> CpuUsage {
    CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: u64v(s.cpu_usage_ns),
        usage_nano_cores: nano_cores.map(|value| UInt64Value { value }),
        psi: psi(s.cpu_psi),
    }
}

fn memory_usage(s: &Stats, at: i64) -> MemoryUsage {
    MemoryUsage {
        timestamp: at,
        working_set_bytes: u64v(s.memory_working_set_bytes),
        available_bytes: s.memory_limit_bytes.map(|l| UInt64Value {
            value: l.saturating_sub(s.memory_working_set_bytes),
        }),
        usage_bytes: u64v(s.memory_usage_bytes),
        rss_bytes: u64v(s.memory_rss_bytes),
        page_faults: u64v(s.page_faults),
        major_page_faults: u64v(s.major_page_faults),
        psi: psi(s.memory_psi),
    }
}

fn swap_usage(s: &Stats, at: i64) -> Option<SwapUsage> {
    let used = s.swap_usage_bytes?;
    Some(SwapUsage {
        timestamp: at,
        swap_available_bytes: s.swap_limit_bytes.map(|l| UInt64Value {
            value: l.saturating_sub(used),
        }),
        swap_usage_bytes: u64v(used),
    })
}

fn io_usage(s: &Stats, at: i64) -> Option<IoUsage> {
    s.io_psi.map(|p| IoUsage {
        timestamp: at,
        psi: psi(Some(p)),
    })
}

/// One interface's counters from `/proc/net/dev`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NetDev {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `name: 8 receive counters 8 transmit counters`.
pub(crate) fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            if v.len() < 16 {
                return None;
            }
            Some(NetDev {
                name: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// The interfaces (but loopback) of the network namespace pinned at `ns`; blocking.
///
/// procfs `net/` follows the reading thread's network namespace, so a fresh thread joins the namespace, reads
/// `/proc/thread-self/net/dev` and exits: the daemon's own threads never change namespace.
fn netns_interfaces(ns: &Path) -> std::io::Result<Vec<NetDev>> {
    let file = std::fs::File::open(ns)?;
    let text = std::thread::Builder::new()
        .name("berth-netstat".into())
        .spawn(move || -> std::io::Result<String> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            std::fs::read_to_string("/proc/thread-self/net/dev")
        })?
        .join()
        .map_err(|_| std::io::Error::other("the network stats thread panicked"))??;
    Ok(parse_net_dev(&text)
        .into_iter()
        .filter(|d| d.name != "lo")
        .collect())
}

fn interface_usage(d: &NetDev) -> NetworkInterfaceUsage {
    NetworkInterfaceUsage {
        name: d.name.clone(),
        rx_bytes: u64v(d.rx_bytes),
        rx_errors: u64v(d.rx_errors),
        tx_bytes: u64v(d.tx_bytes),
        tx_errors: u64v(d.tx_errors),
    }
}

fn network_usage(ifaces: &[NetDev], at: i64) -> NetworkUsage {
    let default = ifaces
        .iter()
        .find(|d| d.name == DEFAULT_INTERFACE)
        .or_else(|| ifaces.first());
    NetworkUsage {
        timestamp: at,
        default_interface: default.map(interface_usage),
        interfaces: ifaces.iter().map(interface_usage).collect(),
    }
}

/// What one pass over a container gathers: the CRI stats and the raw figures metrics are built from.
struct ContainerSample {
    stats: ContainerStats,
    cgroup: Option<Stats>,
    layer: Option<berth_snapshotter::Usage>,
    /// When the process started (ns since the epoch), 0 if it never did.
    started_at: i64,
}

/// What one pass over a pod gathers.
struct PodSample {
    stats: PodSandboxStats,
    cgroup: Option<Stats>,
    interfaces: Option<Vec<NetDev>>,
    containers: Vec<(ContainerRecord, ContainerSample)>,
}

impl Berth {
    pub(crate) async fn container_stats(&self, id: &str) -> Result<ContainerStatsResponse, Status> {
        let rec = self
            .find_container(id)?
            .ok_or_else(|| Status::not_found(format!("container {id} not found")))?;
        let berth = self.self_arc();
        let stats = tokio::task::spawn_blocking(move || berth.sample_container(&rec).stats)
            .await
            .map_err(internal)?;
        Ok(ContainerStatsResponse { stats: Some(stats) })
    }

    pub(crate) async fn list_container_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>, Status> {
        let berth = self.self_arc();
        tokio::task::spawn_blocking(move || {
            let filter = filter.unwrap_or_default();
            let all = berth.all_containers()?;
            let out = all
                .iter()
                .filter(|c| {
                    (filter.id.is_empty() || c.id.starts_with(&filter.id))
                        && (filter.pod_sandbox_id.is_empty()
                            || c.pod_id.starts_with(&filter.pod_sandbox_id))
                        && labels_match(&c.config().labels, &filter.label_selector)
                })
                .map(|c| berth.sample_container(c).stats)
                .collect();
            berth.forget_gone(&all)?;
            Ok(out)
        })
        .await
        .map_err(internal)?
    }

    pub(crate) async fn pod_sandbox_stats(
        &self,
        id: &str,
    ) -> Result<PodSandboxStatsResponse, Status> {
        let pod = self
            .find_pod(id)?
            .filter(|p| p.state != PodState::Creating)
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id} not found")))?;
        let berth = self.self_arc();
        let stats = tokio::task::spawn_blocking(move || berth.sample_pod(&pod).map(|s| s.stats))
            .await
            .map_err(internal)??;
        Ok(PodSandboxStatsResponse { stats: Some(stats) })
    }

    pub(crate) async fn list_pod_sandbox_stats(
        &self,
        filter: Option<PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>, Status> {
        let filter = filter.unwrap_or_default();
        let berth = self.self_arc();
        tokio::task::spawn_blocking(move || {
            let pods = berth.ready_pods()?;
            let out = pods
                .iter()
                .filter(|p| {
                    (filter.id.is_empty() || p.id.starts_with(&filter.id))
                        && labels_match(&p.config().labels, &filter.label_selector)
                })
                .map(|p| berth.sample_pod(p).map(|s| s.stats))
                .collect::<Result<Vec<_>, Status>>()?;
            berth.forget_gone(&berth.all_containers()?)?;
            Ok(out)
        })
        .await
        .map_err(internal)?
    }

    pub(crate) fn list_metric_descriptors(&self) -> ListMetricDescriptorsResponse {
        ListMetricDescriptorsResponse {
            descriptors: DESCRIPTORS
                .iter()
                .map(|d| MetricDescriptor {
                    name: d.name.into(),
                    help: d.help.into(),
                    label_keys: d.label_keys().into_iter().map(String::from).collect(),
                })
                .collect(),
        }
    }

    pub(crate) async fn list_pod_sandbox_metrics(&self) -> Result<Vec<PodSandboxMetrics>, Status> {
        let berth = self.self_arc();
        tokio::task::spawn_blocking(move || {
            let fs = berth.images.root().display().to_string();
            let fs_stat = nix::sys::statvfs::statvfs(berth.images.root()).ok();
            let mut out = Vec::new();
            for pod in berth.ready_pods()? {
                let sample = berth.sample_pod(&pod)?;
                let at = now_nanos();
                let pod_name = pod.config().metadata.unwrap_or_default().name;
                let mut metrics = Vec::new();
                if let Some(s) = &sample.cgroup {
                    metrics.extend(cgroup_metrics(s, at, &[&pod.id, &pod_name]));
                }
                for d in sample.interfaces.iter().flatten() {
                    metrics.extend(network_metrics(d, at, &[&pod.id, &pod_name]));
                }
                let container_metrics = sample
                    .containers
                    .iter()
                    .map(|(rec, c)| {
                        let name = rec.name().0;
                        let labels = [rec.id.as_str(), name.as_str()];
                        let mut m = Vec::new();
                        if let Some(s) = &c.cgroup {
                            m.extend(cgroup_metrics(s, at, &labels));
                        }
                        if let Some(u) = c.layer {
                            m.extend(fs_metrics(u, fs_stat.as_ref(), at, &labels, &fs));
                        }
                        let started = if c.started_at > 0 {
                            c.started_at
                        } else {
                            rec.created_at
                        };
                        m.extend(spec_metrics(&rec.config(), started, at, &labels));
                        ContainerMetrics {
                            container_id: rec.id.clone(),
                            metrics: m,
                        }
                    })
                    .collect();
                out.push(PodSandboxMetrics {
                    pod_sandbox_id: pod.id.clone(),
                    metrics,
                    container_metrics,
                });
            }
            berth.forget_gone(&berth.all_containers()?)?;
            Ok(out)
        })
        .await
        .map_err(internal)?
    }

    /// Every container past creation.
    fn all_containers(&self) -> Result<Vec<ContainerRecord>, Status> {
        Ok(self
            .store
            .list::<ContainerRecord>(crate::container::CONTAINERS)
            .map_err(internal)?
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| c.state != RecState::Creating)
            .collect())
    }

    fn ready_pods(&self) -> Result<Vec<PodRecord>, Status> {
        Ok(self
            .store
            .list::<PodRecord>(crate::pod::PODS)
            .map_err(internal)?
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| p.state == PodState::Ready)
            .collect())
    }

    /// Drops the CPU samples of containers and pods that are gone.
    fn forget_gone(&self, containers: &[ContainerRecord]) -> Result<(), Status> {
        let pods = self
            .store
            .list::<PodRecord>(crate::pod::PODS)
            .map_err(internal)?;
        let mut live: std::collections::HashSet<String> =
            containers.iter().map(|c| c.id.clone()).collect();
        live.extend(pods.iter().map(|(id, _)| pod_key(id)));
        self.cpu_samples.retain(|k| live.contains(k));
        Ok(())
    }

    /// Stats of one container; blocking. CPU and memory only while it runs (its cgroup is gone once it exits).
    fn sample_container(&self, rec: &ContainerRecord) -> ContainerSample {
        let config = rec.config();
        let state = self
            .runtimes
            .get(&rec.handler)
            .and_then(|h| h.state(&rec.id).ok().map(|st| (h, st)));
        let started_at = state.as_ref().map_or(0, |(_, st)| st.started_at as i64);
        let cgroup = state.and_then(|(h, st)| {
            (st.phase == Phase::Running)
                .then(|| h.stats(&rec.id).ok())
                .flatten()
        });
        let at = now_nanos();
        let layer = (rec.state != RecState::Creating)
            .then(|| self.images.container_rootfs_usage(&rec.id).ok())
            .flatten();
        let stats = ContainerStats {
            attributes: Some(ContainerAttributes {
                id: rec.id.clone(),
                metadata: config.metadata.clone(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
            }),
            cpu: cgroup.as_ref().map(|s| {
                cpu_usage(
                    s,
                    at,
                    self.cpu_samples.nano_cores(&rec.id, at, s.cpu_usage_ns),
                )
            }),
            memory: cgroup.as_ref().map(|s| memory_usage(s, at)),
            writable_layer: layer.map(|u| FilesystemUsage {
                timestamp: at,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: self.images.root().display().to_string(),
                }),
                used_bytes: u64v(u.bytes),
                inodes_used: u64v(u.inodes),
            }),
            swap: cgroup.as_ref().and_then(|s| swap_usage(s, at)),
            io: cgroup.as_ref().and_then(|s| io_usage(s, at)),
        };
        ContainerSample {
            stats,
            cgroup,
            layer,
            started_at,
        }
    }

    /// Stats of one pod and its containers; blocking. Usage figures only while the pod is ready.
    fn sample_pod(&self, pod: &PodRecord) -> Result<PodSample, Status> {
        let config = pod.config();
        let containers: Vec<(ContainerRecord, ContainerSample)> = self
            .containers_of(&pod.id)?
            .into_iter()
            .filter(|c| c.state != RecState::Creating)
            .map(|c| {
                let s = self.sample_container(&c);
                (c, s)
            })
            .collect();
        let ready = pod.state == PodState::Ready;
        let cgroup = ready.then(|| self.pod_cgroup_stats(pod, &containers));
        // Host-network pods share the host's counters, which are not theirs to report.
        let interfaces = if ready && !pod.host_network {
            let ns = PodPaths::new(&self.config.state, &pod.id).ns("net");
            netns_interfaces(&ns)
                .map_err(|e| {
                    tracing::debug!(pod = %pod.id, error = %e, "reading pod network counters");
                })
                .ok()
        } else {
            None
        };
        let at = now_nanos();
        let linux = LinuxPodSandboxStats {
            cpu: cgroup.as_ref().map(|s| {
                cpu_usage(
                    s,
                    at,
                    self.cpu_samples
                        .nano_cores(&pod_key(&pod.id), at, s.cpu_usage_ns),
                )
            }),
            memory: cgroup.as_ref().map(|s| memory_usage(s, at)),
            network: interfaces.as_deref().map(|i| network_usage(i, at)),
            process: cgroup.as_ref().map(|s| ProcessUsage {
                timestamp: at,
                process_count: u64v(s.processes),
            }),
            containers: containers.iter().map(|(_, c)| c.stats.clone()).collect(),
            io: cgroup.as_ref().and_then(|s| io_usage(s, at)),
        };
        Ok(PodSample {
            stats: PodSandboxStats {
                attributes: Some(PodSandboxAttributes {
                    id: pod.id.clone(),
                    metadata: config.metadata.clone(),
                    labels: config.labels.clone(),
                    annotations: config.annotations.clone(),
                }),
                linux: Some(linux),
                windows: None,
            },
            cgroup,
            interfaces,
            containers,
        })
    }

    /// The pod cgroup's own figures when it exists (they include every container, running or exited, and any
    /// process outside one); otherwise the sum of the running containers'.
    fn pod_cgroup_stats(
        &self,
        pod: &PodRecord,
        containers: &[(ContainerRecord, ContainerSample)],
    ) -> Stats {
        if let Ok(layout) = Layout::detect() {
            let cg = Cgroup::open(&layout, Path::new(&pod.cgroup_parent));
            if cg.dir_of("memory").is_some_and(Path::is_dir)
                || cg.dir_of("cpuacct").is_some_and(Path::is_dir)
            {
                return cg.stats();
            }
        }
        let mut sum = Stats::default();
        for s in containers.iter().filter_map(|(_, c)| c.cgroup.as_ref()) {
            sum.cpu_usage_ns += s.cpu_usage_ns;
            sum.cpu_user_ns += s.cpu_user_ns;
            sum.cpu_system_ns += s.cpu_system_ns;
            sum.memory_usage_bytes += s.memory_usage_bytes;
            sum.memory_working_set_bytes += s.memory_working_set_bytes;
            sum.memory_rss_bytes += s.memory_rss_bytes;
            sum.memory_cache_bytes += s.memory_cache_bytes;
            sum.page_faults += s.page_faults;
            sum.major_page_faults += s.major_page_faults;
            sum.processes += s.processes;
            sum.memory_kernel_bytes += s.memory_kernel_bytes;
            sum.threads += s.threads;
            sum.file_descriptors += s.file_descriptors;
            sum.sockets += s.sockets;
            for d in &s.blkio {
                match sum
                    .blkio
                    .iter_mut()
                    .find(|x| x.major == d.major && x.minor == d.minor)
                {
                    Some(x) => {
                        x.read_bytes += d.read_bytes;
                        x.write_bytes += d.write_bytes;
                        x.reads += d.reads;
                        x.writes += d.writes;
                    }
                    None => sum.blkio.push(*d),
                }
            }
        }
        sum
    }
}

// ---------------------------------------------------------------------------------------------- metrics

#[derive(Clone, Copy)]
enum Extra {
    None,
    Interface,
    Device,
    Failure,
    Blkio,
}

/// A metric Berth reports: cAdvisor's name and help, containerd's label keys.
struct Desc {
    name: &'static str,
    help: &'static str,
    extra: Extra,
}

impl Desc {
    fn label_keys(&self) -> Vec<&'static str> {
        let mut keys = vec!["id", "name"];
        match self.extra {
            Extra::None => {}
            Extra::Interface => keys.push("interface"),
            Extra::Device => keys.push("device"),
            Extra::Failure => keys.extend(["failure_type", "scope"]),
            Extra::Blkio => keys.extend(["device", "major", "minor", "operation"]),
        }
        keys
    }
}

const fn d(name: &'static str, help: &'static str, extra: Extra) -> Desc {
    Desc { name, help, extra }
}

/// Every metric [`cgroup_metrics`], [`network_metrics`], [`fs_metrics`] and [`spec_metrics`] emit, and nothing else.
const DESCRIPTORS: &[Desc] = &[
    d(
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time consumed in seconds.",
        Extra::None,
    ),
    d(
        "container_cpu_user_seconds_total",
        "Cumulative user CPU time consumed in seconds.",
        Extra::None,
    ),
    d(
        "container_cpu_system_seconds_total",
        "Cumulative system CPU time consumed in seconds.",
        Extra::None,
    ),
    d(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        Extra::None,
    ),
    d(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        Extra::None,
    ),
    d(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        Extra::None,
    ),
    d(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        Extra::None,
    ),
    d("container_memory_rss", "Size of RSS in bytes.", Extra::None),
    d(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        Extra::None,
    ),
    d(
        "container_memory_swap",
        "Container swap usage in bytes.",
        Extra::None,
    ),
    d(
        "container_memory_failcnt",
        "Number of memory usage hits limits.",
        Extra::None,
    ),
    d(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        Extra::None,
    ),
    d(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes.",
        Extra::None,
    ),
    d(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        Extra::None,
    ),
    d(
        "container_memory_total_active_file_bytes",
        "Current total active file cache memory in bytes.",
        Extra::None,
    ),
    d(
        "container_memory_total_inactive_file_bytes",
        "Current total inactive file cache memory in bytes.",
        Extra::None,
    ),
    d(
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        Extra::Failure,
    ),
    d(
        "container_oom_events_total",
        "Count of out of memory events observed for the container.",
        Extra::None,
    ),
    d(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        Extra::None,
    ),
    d(
        "container_processes",
        "Number of processes running inside the container.",
        Extra::None,
    ),
    d(
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero.",
        Extra::None,
    ),
    d(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
        Extra::Interface,
    ),
    d(
        "container_network_receive_packets_total",
        "Cumulative count of packets received.",
        Extra::Interface,
    ),
    d(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving.",
        Extra::Interface,
    ),
    d(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
        Extra::Interface,
    ),
    d(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
        Extra::Interface,
    ),
    d(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted.",
        Extra::Interface,
    ),
    d(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting.",
        Extra::Interface,
    ),
    d(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
        Extra::Interface,
    ),
    d(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        Extra::Device,
    ),
    d(
        "container_fs_inodes_total",
        "Number of inodes.",
        Extra::Device,
    ),
    d(
        "container_fs_inodes_free",
        "Number of available inodes.",
        Extra::Device,
    ),
    d(
        "container_fs_limit_bytes",
        "Number of bytes that can be consumed by the container on this filesystem.",
        Extra::Device,
    ),
    d(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read.",
        Extra::Device,
    ),
    d(
        "container_fs_reads_total",
        "Cumulative count of reads completed.",
        Extra::Device,
    ),
    d(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written.",
        Extra::Device,
    ),
    d(
        "container_fs_writes_total",
        "Cumulative count of writes completed.",
        Extra::Device,
    ),
    d(
        "container_blkio_device_usage_total",
        "Blkio Device bytes usage.",
        Extra::Blkio,
    ),
    d(
        "container_memory_kernel_usage",
        "Size of kernel memory allocated in bytes.",
        Extra::None,
    ),
    d(
        "container_threads",
        "Number of threads running inside the container.",
        Extra::None,
    ),
    d(
        "container_file_descriptors",
        "Number of open file descriptors for the container.",
        Extra::None,
    ),
    d(
        "container_sockets",
        "Number of open sockets for the container.",
        Extra::None,
    ),
    d(
        "container_last_seen",
        "Last time a container was seen by the exporter.",
        Extra::None,
    ),
    d(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        Extra::None,
    ),
    d(
        "container_spec_cpu_period",
        "CPU period of the container.",
        Extra::None,
    ),
    d(
        "container_spec_cpu_shares",
        "CPU share of the container.",
        Extra::None,
    ),
    d(
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
        Extra::None,
    ),
];

fn metric(name: &str, kind: MetricType, at: i64, labels: &[&str], value: u64) -> Metric {
    Metric {
        name: name.into(),
        timestamp: at,
        metric_type: kind as i32,
        label_values: labels.iter().map(|l| l.to_string()).collect(),
        value: u64v(value),
    }
}

const NS_PER_S: u64 = 1_000_000_000;

/// CPU, memory and process metrics of a cgroup, labelled `[id, name]`.
fn cgroup_metrics(s: &Stats, at: i64, labels: &[&str]) -> Vec<Metric> {
    use MetricType::{Counter, Gauge};
    let mut v = vec![
        (
            "container_cpu_usage_seconds_total",
            Counter,
            s.cpu_usage_ns / NS_PER_S,
        ),
        (
            "container_cpu_user_seconds_total",
            Counter,
            s.cpu_user_ns / NS_PER_S,
        ),
        (
            "container_cpu_system_seconds_total",
            Counter,
            s.cpu_system_ns / NS_PER_S,
        ),
        ("container_cpu_cfs_periods_total", Counter, s.cpu_periods),
        (
            "container_cpu_cfs_throttled_periods_total",
            Counter,
            s.cpu_throttled_periods,
        ),
        (
            "container_cpu_cfs_throttled_seconds_total",
            Counter,
            s.cpu_throttled_ns / NS_PER_S,
        ),
        ("container_memory_cache", Gauge, s.memory_cache_bytes),
        ("container_memory_rss", Gauge, s.memory_rss_bytes),
        (
            "container_memory_mapped_file",
            Gauge,
            s.memory_mapped_file_bytes,
        ),
        ("container_memory_failcnt", Counter, s.memory_failcnt),
        ("container_memory_usage_bytes", Gauge, s.memory_usage_bytes),
        (
            "container_memory_max_usage_bytes",
            Gauge,
            s.memory_max_usage_bytes,
        ),
        (
            "container_memory_working_set_bytes",
            Gauge,
            s.memory_working_set_bytes,
        ),
        (
            "container_memory_total_active_file_bytes",
            Gauge,
            s.memory_active_file_bytes,
        ),
        (
            "container_memory_total_inactive_file_bytes",
            Gauge,
            s.memory_inactive_file_bytes,
        ),
        ("container_oom_events_total", Counter, s.oom_kills),
        // cAdvisor reports 0 for "no limit".
        (
            "container_spec_memory_limit_bytes",
            Gauge,
            s.memory_limit_bytes.unwrap_or(0),
        ),
        ("container_processes", Gauge, s.processes),
        ("container_threads_max", Gauge, s.pids_limit.unwrap_or(0)),
        (
            "container_memory_kernel_usage",
            Gauge,
            s.memory_kernel_bytes,
        ),
        ("container_threads", Gauge, s.threads),
        ("container_file_descriptors", Gauge, s.file_descriptors),
        ("container_sockets", Gauge, s.sockets),
        ("container_last_seen", Gauge, at.max(0) as u64 / NS_PER_S),
    ];
    if let Some(swap) = s.swap_usage_bytes {
        v.push(("container_memory_swap", Gauge, swap));
    }
    let mut out: Vec<Metric> = v
        .into_iter()
        .map(|(n, k, val)| metric(n, k, at, labels, val))
        .collect();
    // Page faults as cAdvisor reports them: the counters of the cgroup and everything below it.
    for (kind, val) in [
        ("pgfault", s.page_faults),
        ("pgmajfault", s.major_page_faults),
    ] {
        let labels: Vec<&str> = labels.iter().copied().chain([kind, "hierarchy"]).collect();
        out.push(metric(
            "container_memory_failures_total",
            Counter,
            at,
            &labels,
            val,
        ));
    }
    // Block I/O per device: the device label is `major:minor` (no device names here, which cAdvisor looks up).
    for d in &s.blkio {
        let (major, minor) = (d.major.to_string(), d.minor.to_string());
        let device = format!("{major}:{minor}");
        let dev_labels: Vec<&str> = labels.iter().copied().chain([device.as_str()]).collect();
        for (name, val) in [
            ("container_fs_reads_bytes_total", d.read_bytes),
            ("container_fs_reads_total", d.reads),
            ("container_fs_writes_bytes_total", d.write_bytes),
            ("container_fs_writes_total", d.writes),
        ] {
            out.push(metric(name, Counter, at, &dev_labels, val));
        }
        for (op, val) in [("Read", d.read_bytes), ("Write", d.write_bytes)] {
            let labels: Vec<&str> = dev_labels
                .iter()
                .copied()
                .chain([major.as_str(), minor.as_str(), op])
                .collect();
            out.push(metric(
                "container_blkio_device_usage_total",
                Counter,
                at,
                &labels,
                val,
            ));
        }
    }
    out
}

/// The CPU period the kernel applies when none is set (µs).
const DEFAULT_CPU_PERIOD_US: u64 = 100_000;
/// The CPU shares the kernel applies when none are set.
const DEFAULT_CPU_SHARES: u64 = 1024;

/// A container's configured resources and start time, labelled `[id, name]`. Period and shares left unset are the
/// kernel's defaults (what cAdvisor reads from the cgroup); an unset swap limit is 0, cAdvisor's "no limit".
fn spec_metrics(
    config: &ContainerConfig,
    started_at: i64,
    at: i64,
    labels: &[&str],
) -> Vec<Metric> {
    let res = config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let or = |v: i64, default: u64| if v > 0 { v as u64 } else { default };
    [
        (
            "container_spec_cpu_period",
            or(res.cpu_period, DEFAULT_CPU_PERIOD_US),
        ),
        (
            "container_spec_cpu_shares",
            or(res.cpu_shares, DEFAULT_CPU_SHARES),
        ),
        (
            "container_spec_memory_swap_limit_bytes",
            or(res.memory_swap_limit_in_bytes, 0),
        ),
        (
            "container_start_time_seconds",
            started_at.max(0) as u64 / NS_PER_S,
        ),
    ]
    .into_iter()
    .map(|(n, val)| metric(n, MetricType::Gauge, at, labels, val))
    .collect()
}

/// Network metrics of one interface, labelled `[id, name, interface]`.
fn network_metrics(d: &NetDev, at: i64, labels: &[&str]) -> Vec<Metric> {
    let labels: Vec<&str> = labels.iter().copied().chain([d.name.as_str()]).collect();
    [
        ("container_network_receive_bytes_total", d.rx_bytes),
        ("container_network_receive_packets_total", d.rx_packets),
        (
            "container_network_receive_packets_dropped_total",
            d.rx_dropped,
        ),
        ("container_network_receive_errors_total", d.rx_errors),
        ("container_network_transmit_bytes_total", d.tx_bytes),
        ("container_network_transmit_packets_total", d.tx_packets),
        (
            "container_network_transmit_packets_dropped_total",
            d.tx_dropped,
        ),
        ("container_network_transmit_errors_total", d.tx_errors),
    ]
    .into_iter()
    .map(|(n, val)| metric(n, MetricType::Counter, at, &labels, val))
    .collect()
}

/// Writable-layer metrics, labelled `[id, name, device]` (the device is the filesystem holding the layers).
fn fs_metrics(
    u: berth_snapshotter::Usage,
    fs: Option<&nix::sys::statvfs::Statvfs>,
    at: i64,
    labels: &[&str],
    device: &str,
) -> Vec<Metric> {
    let labels: Vec<&str> = labels.iter().copied().chain([device]).collect();
    let mut v = vec![metric(
        "container_fs_usage_bytes",
        MetricType::Gauge,
        at,
        &labels,
        u.bytes,
    )];
    if let Some(fs) = fs {
        let frsize = fs.fragment_size();
        for (name, val) in [
            ("container_fs_inodes_total", fs.files()),
            ("container_fs_inodes_free", fs.files_free()),
            ("container_fs_limit_bytes", fs.blocks() * frsize),
        ] {
            v.push(metric(name, MetricType::Gauge, at, &labels, val));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:12345678     100    1    2    0     0          0         0     5000      50    3    4    0     0       0          0
";

    #[test]
    fn net_dev_parses_receive_and_transmit() {
        let devs = parse_net_dev(NET_DEV);
        assert_eq!(devs.len(), 2);
        assert_eq!(
            devs[1],
            NetDev {
                name: "eth0".into(),
                rx_bytes: 12345678,
                rx_packets: 100,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 5000,
                tx_packets: 50,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
        let usage = network_usage(&devs[1..], 7);
        assert_eq!(usage.default_interface.unwrap().rx_bytes, u64v(12345678));
    }

    #[test]
    fn nano_cores_need_two_samples() {
        let s = CpuSamples::default();
        assert_eq!(s.nano_cores("c", 0, 0), None);
        // Half a core over one second.
        assert_eq!(
            s.nano_cores("c", 1_000_000_000, 500_000_000),
            Some(500_000_000)
        );
        // Too close to the last sample: the last rate again.
        assert_eq!(
            s.nano_cores("c", 1_000_000_001, 900_000_000),
            Some(500_000_000)
        );
        // Two full cores over the next second.
        assert_eq!(
            s.nano_cores("c", 2_000_000_000, 2_500_000_000),
            Some(2_000_000_000)
        );
        // A counter that went back starts over.
        assert_eq!(s.nano_cores("c", 3_000_000_000, 10), None);
        s.retain(|_| false);
        assert_eq!(s.nano_cores("c", 4_000_000_000, 20), None);
    }

    #[test]
    fn every_emitted_metric_is_described_with_matching_labels() {
        let described: HashMap<&str, usize> = DESCRIPTORS
            .iter()
            .map(|d| (d.name, d.label_keys().len()))
            .collect();
        let stats = Stats {
            swap_usage_bytes: Some(1),
            blkio: vec![berth_runtime::cgroups::BlkioDevice {
                major: 8,
                minor: 0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let u = berth_snapshotter::Usage::default();
        let fs = nix::sys::statvfs::statvfs("/").ok();
        let all = cgroup_metrics(&stats, 0, &["id", "name"])
            .into_iter()
            .chain(network_metrics(&NetDev::default(), 0, &["id", "name"]))
            .chain(fs_metrics(u, fs.as_ref(), 0, &["id", "name"], "/"))
            .chain(spec_metrics(
                &ContainerConfig::default(),
                0,
                0,
                &["id", "name"],
            ));
        let mut seen = std::collections::HashSet::new();
        for m in all {
            assert_eq!(
                described.get(m.name.as_str()),
                Some(&m.label_values.len()),
                "{} is not described with {} labels",
                m.name,
                m.label_values.len()
            );
            seen.insert(m.name);
        }
        for d in DESCRIPTORS {
            assert!(
                seen.contains(d.name),
                "{} is described but never emitted",
                d.name
            );
        }
    }

    /// critest's `expectedMetricDescriptorNames`, less its `unimplementedMetricDescriptors`.
    const CRITEST_EXPECTED: &[&str] = &[
        "container_blkio_device_usage_total",
        "container_cpu_cfs_periods_total",
        "container_cpu_cfs_throttled_periods_total",
        "container_cpu_cfs_throttled_seconds_total",
        "container_cpu_system_seconds_total",
        "container_cpu_usage_seconds_total",
        "container_cpu_user_seconds_total",
        "container_file_descriptors",
        "container_fs_inodes_free",
        "container_fs_inodes_total",
        "container_fs_limit_bytes",
        "container_fs_reads_bytes_total",
        "container_fs_reads_total",
        "container_fs_usage_bytes",
        "container_fs_writes_bytes_total",
        "container_fs_writes_total",
        "container_last_seen",
        "container_memory_cache",
        "container_memory_failcnt",
        "container_memory_failures_total",
        "container_memory_kernel_usage",
        "container_memory_mapped_file",
        "container_memory_max_usage_bytes",
        "container_memory_rss",
        "container_memory_swap",
        "container_memory_usage_bytes",
        "container_memory_working_set_bytes",
        "container_network_receive_bytes_total",
        "container_network_receive_errors_total",
        "container_network_receive_packets_dropped_total",
        "container_network_receive_packets_total",
        "container_network_transmit_bytes_total",
        "container_network_transmit_errors_total",
        "container_network_transmit_packets_dropped_total",
        "container_network_transmit_packets_total",
        "container_oom_events_total",
        "container_processes",
        "container_sockets",
        "container_spec_cpu_period",
        "container_spec_cpu_shares",
        "container_spec_memory_limit_bytes",
        "container_spec_memory_swap_limit_bytes",
        "container_start_time_seconds",
        "container_threads",
        "container_threads_max",
    ];

    #[test]
    fn critest_expected_metrics_are_described() {
        for name in CRITEST_EXPECTED {
            let d = DESCRIPTORS
                .iter()
                .find(|d| d.name == *name)
                .unwrap_or_else(|| panic!("{name} is not described"));
            assert!(!d.help.is_empty());
        }
    }

    fn value(ms: &[Metric], name: &str) -> (Vec<String>, u64) {
        let m = ms
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        (
            m.label_values.clone(),
            m.value.as_ref().map_or(0, |v| v.value),
        )
    }

    #[test]
    fn spec_metrics_follow_the_configured_resources() {
        let at = 5_000_000_000;
        let ms = spec_metrics(&ContainerConfig::default(), 3_000_000_000, at, &["i", "n"]);
        assert_eq!(value(&ms, "container_spec_cpu_period").1, 100_000);
        assert_eq!(value(&ms, "container_spec_cpu_shares").1, 1024);
        assert_eq!(value(&ms, "container_spec_memory_swap_limit_bytes").1, 0);
        assert_eq!(value(&ms, "container_start_time_seconds").1, 3);
        let config = ContainerConfig {
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_period: 50_000,
                    cpu_shares: 512,
                    memory_swap_limit_in_bytes: 64 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ms = spec_metrics(&config, 0, at, &["i", "n"]);
        assert_eq!(value(&ms, "container_spec_cpu_period").1, 50_000);
        assert_eq!(value(&ms, "container_spec_cpu_shares").1, 512);
        assert_eq!(
            value(&ms, "container_spec_memory_swap_limit_bytes"),
            (vec!["i".to_string(), "n".to_string()], 64 << 20)
        );
    }

    #[test]
    fn cgroup_metrics_carry_blkio_threads_and_fds() {
        let s = Stats {
            blkio: vec![berth_runtime::cgroups::BlkioDevice {
                major: 8,
                minor: 16,
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 1,
                writes: 2,
            }],
            memory_kernel_bytes: 77,
            threads: 3,
            file_descriptors: 9,
            sockets: 2,
            ..Default::default()
        };
        let ms = cgroup_metrics(&s, 7_500_000_000, &["i", "n"]);
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            value(&ms, "container_fs_reads_bytes_total"),
            (labels(&["i", "n", "8:16"]), 4096)
        );
        assert_eq!(value(&ms, "container_fs_reads_total").1, 1);
        assert_eq!(value(&ms, "container_fs_writes_bytes_total").1, 8192);
        assert_eq!(value(&ms, "container_fs_writes_total").1, 2);
        let blkio: Vec<_> = ms
            .iter()
            .filter(|m| m.name == "container_blkio_device_usage_total")
            .map(|m| (m.label_values.clone(), m.value.as_ref().unwrap().value))
            .collect();
        assert_eq!(
            blkio,
            vec![
                (labels(&["i", "n", "8:16", "8", "16", "Read"]), 4096),
                (labels(&["i", "n", "8:16", "8", "16", "Write"]), 8192),
            ]
        );
        assert_eq!(value(&ms, "container_memory_kernel_usage").1, 77);
        assert_eq!(value(&ms, "container_threads").1, 3);
        assert_eq!(value(&ms, "container_file_descriptors").1, 9);
        assert_eq!(value(&ms, "container_sockets").1, 2);
        assert_eq!(value(&ms, "container_last_seen").1, 7);
    }

    #[test]
    fn available_memory_needs_a_limit() {
        let mut s = Stats {
            memory_working_set_bytes: 10,
            ..Default::default()
        };
        assert_eq!(memory_usage(&s, 0).available_bytes, None);
        s.memory_limit_bytes = Some(100);
        assert_eq!(memory_usage(&s, 0).available_bytes, u64v(90));
    }
}
