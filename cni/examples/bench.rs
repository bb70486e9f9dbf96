//! ADD/DEL timing of our plugins against the reference plugins, through the same client.
//!
//! Runs as root inside throwaway network namespaces (a fake host and one pod), so nothing
//! touches the machine's real network. Build first so the plugins sit beside the example:
//!
//! ```text
//! cargo build --release -p berth-cni --bins --examples
//! sudo target/release/examples/bench [iterations] [--bin-dir DIR] [--ref-dir /usr/lib/cni]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_cni::client::{ClientOptions, CniClient, PodNetwork, PortMapping};
use berth_cni::netlink::in_netns;

struct Ns(String);

impl Ns {
    fn new(name: String) -> Self {
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "ip netns add {name} (are you root?)");
        let _ = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status();
        Ns(name)
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // berth-portmap's per-namespace lock and markers, keyed by the namespace inode.
        if let Ok(m) = std::fs::metadata(self.path()) {
            use std::os::unix::fs::MetadataExt;
            let _ = std::fs::remove_dir_all(format!("/run/berth-portmap/{}", m.ino()));
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn conflist(
    prefix: &str,
    full: bool,
    subnet: &str,
    bridge: &str,
    data: &Path,
) -> serde_json::Value {
    let mut plugins = vec![serde_json::json!({
        "type": format!("{prefix}bridge"), "bridge": bridge, "isGateway": true, "hairpinMode": true,
        "ipam": {"type": format!("{prefix}host-local"), "ranges": [[{"subnet": subnet}]],
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data}
    })];
    if full {
        plugins.push(serde_json::json!({"type": format!("{prefix}portmap"), "capabilities": {"portMappings": true}}));
        plugins.push(serde_json::json!({"type": format!("{prefix}loopback")}));
    }
    serde_json::json!({"cniVersion": "1.0.0", "name": format!("bench{prefix}{full}"), "plugins": plugins})
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

/// ADD and DEL samples for one plugin set.
fn run(
    bin_dir: &Path,
    prefix: &str,
    full: bool,
    iters: usize,
    tag: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let host = Ns::new(format!("bbh{tag}{}", std::process::id()));
    let pod_ns = Ns::new(format!("bbp{tag}{}", std::process::id()));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("net.d")).expect("mkdir");
    let conf = conflist(
        prefix,
        full,
        "10.239.1.0/24",
        &format!("bb{tag}"),
        &dir.path().join("leases"),
    );
    std::fs::write(dir.path().join("net.d/10.conflist"), conf.to_string()).expect("write conf");
    let client = CniClient::new(ClientOptions {
        conf_dir: dir.path().join("net.d"),
        bin_dirs: vec![bin_dir.to_path_buf()],
        cache_dir: dir.path().join("cache"),
        timeout: Duration::from_secs(30),
    });
    let pod_path = pod_ns.path();
    in_netns(&host.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (mut adds, mut dels) = (Vec::new(), Vec::new());
            for i in 0..iters + 2 {
                let pod = PodNetwork {
                    id: format!("bench{i}"),
                    netns: pod_path.clone(),
                    ifname: "eth0".into(),
                    name: "bench".into(),
                    namespace: "default".into(),
                    uid: format!("uid{i}"),
                    port_mappings: if full {
                        vec![PortMapping {
                            host_port: 18080,
                            container_port: 80,
                            protocol: "tcp".into(),
                            host_ip: None,
                        }]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                };
                let t = Instant::now();
                client.add(&pod).await.expect("add");
                let add = t.elapsed();
                let t = Instant::now();
                client.del(&pod).await.expect("del");
                let del = t.elapsed();
                // The first rounds create the bridge and warm caches; leave them out.
                if i >= 2 {
                    adds.push(add);
                    dels.push(del);
                }
            }
            (adds, dels)
        })
    })
    .expect("enter host netns")
}

fn main() {
    let mut iters: usize = 30;
    let exe = std::env::current_exe().expect("current exe");
    let mut bin_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut ref_dir = PathBuf::from("/usr/lib/cni");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bin-dir" => bin_dir = args.next().map(PathBuf::from).unwrap_or(bin_dir),
            "--ref-dir" => ref_dir = args.next().map(PathBuf::from).unwrap_or(ref_dir),
            n => iters = n.parse().unwrap_or(iters),
        }
    }
    println!(
        "{iters} iterations; ours from {}, reference from {}",
        bin_dir.display(),
        ref_dir.display()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12}",
        "chain", "ADD ms", "DEL ms", "ADD+DEL ms"
    );
    for (full, label) in [
        (false, "bridge+host-local"),
        (true, "+portmap(1 port)+loopback"),
    ] {
        // Alternate the two sets in rounds so load from other processes hits both alike.
        let rounds = 5;
        let (mut oa, mut od, mut ra, mut rd) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (a, d) = run(&bin_dir, "berth-", full, iters.div_ceil(rounds), "o");
            oa.extend(a);
            od.extend(d);
            let (a, d) = run(&ref_dir, "", full, iters.div_ceil(rounds), "r");
            ra.extend(a);
            rd.extend(d);
        }
        let ours = (median(oa), median(od));
        let refs = (median(ra), median(rd));
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>12.2}",
            format!("berth {label}"),
            ours.0,
            ours.1,
            ours.0 + ours.1
        );
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>12.2}",
            format!("reference {label}"),
            refs.0,
            refs.1,
            refs.0 + refs.1
        );
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>12.2}",
            "ratio berth/reference",
            ours.0 / refs.0,
            ours.1 / refs.1,
            (ours.0 + ours.1) / (refs.0 + refs.1)
        );
    }
}
