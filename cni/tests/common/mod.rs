//! Test fixtures: throwaway network namespaces (a fake "host" per test plus pods), a client
//! pointed at temp dirs, and socket helpers that act inside a namespace.
//!
//! Every test runs its plugins inside its own host namespace, so bridges, nft tables,
//! `ip_forward` and `route_localnet` never touch the machine's real network; dropping a
//! [`Netns`] deletes the namespace and everything in it, even when the test panicked.
#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_cni::client::{ClientOptions, CniClient, PodNetwork, PortMapping};
use berth_cni::netlink::{Netlink, in_netns};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips (with a note) where the test needs root for namespaces.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}x{n}", std::process::id() % 100000)
}

/// A named network namespace under /run/netns, deleted on drop.
pub struct Netns {
    pub name: String,
    pub path: PathBuf,
}

impl Netns {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(st.success(), "ip netns add {name}");
        let ns = Self {
            path: PathBuf::from(format!("/run/netns/{name}")),
            name,
        };
        ns.run(|| {
            let mut nl = Netlink::open().unwrap();
            let lo = nl.link_by_name("lo").unwrap().unwrap();
            nl.set_link(lo.index, Some(true), None, None, None).unwrap();
        });
        ns
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.path, f).expect("enter netns")
    }

    /// Runs an async body on a current-thread runtime inside this namespace, so the plugin
    /// processes it spawns are born here.
    pub fn block_on<F: Future>(&self, f: impl FnOnce() -> F + Send) -> F::Output
    where
        F::Output: Send,
    {
        self.run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
    }

    pub fn link_names(&self) -> Vec<String> {
        self.run(|| {
            Netlink::open()
                .unwrap()
                .links()
                .unwrap()
                .into_iter()
                .map(|l| l.name)
                .collect()
        })
    }

    pub fn nft_ruleset(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "list", "ruleset"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn iptables_nat(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "iptables-save", "-t", "nat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // berth-portmap keeps per-namespace markers keyed by the namespace's inode.
        if let Ok(m) = std::fs::metadata(&self.path) {
            use std::os::unix::fs::MetadataExt;
            let _ = std::fs::remove_dir_all(format!("/run/berth-portmap/{}", m.ino()));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The directory holding our plugin binaries (cargo builds them for integration tests).
pub fn our_bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_berth-bridge"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub const REFERENCE_BIN_DIR: &str = "/usr/lib/cni";

/// Which plugin set a network uses.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    Berth,
    Reference,
}

impl Flavor {
    pub fn prefix(self) -> &'static str {
        match self {
            Flavor::Berth => "berth-",
            Flavor::Reference => "",
        }
    }
    pub fn bin_dir(self) -> PathBuf {
        match self {
            Flavor::Berth => our_bin_dir(),
            Flavor::Reference => REFERENCE_BIN_DIR.into(),
        }
    }
}

/// A test network: a conf dir holding a bridge+host-local+portmap+loopback list, a lease dir
/// and a cache dir, all under one temp dir.
pub struct TestNet {
    pub dir: tempfile::TempDir,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    pub name: String,
}

impl TestNet {
    pub fn new(flavor: Flavor, version: &str) -> Self {
        Self::build(flavor, version, false)
    }

    /// Dual stack: a second range set `fd00:<a>:<b>::/64` beside the IPv4 one.
    pub fn dual(flavor: Flavor, version: &str) -> Self {
        Self::build(flavor, version, true)
    }

    fn build(flavor: Flavor, version: &str, dual: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let (a, b) = (200 + (std::process::id() % 50) as u8, (n % 250) as u8);
        let subnet = format!("10.{a}.{b}.0/24");
        let gateway = format!("10.{a}.{b}.1");
        let bridge = unique("bt");
        let name = unique("btnet");
        let p = flavor.prefix();
        let mut ranges = vec![serde_json::json!([{ "subnet": subnet }])];
        let mut routes = vec![serde_json::json!({ "dst": "0.0.0.0/0" })];
        if dual {
            ranges.push(serde_json::json!([{ "subnet": format!("fd00:{a}:{b}::/64") }]));
            routes.push(serde_json::json!({ "dst": "::/0" }));
        }
        let conf = serde_json::json!({
            "cniVersion": version,
            "name": name,
            "plugins": [
                {
                    "type": format!("{p}bridge"),
                    "bridge": bridge,
                    "isGateway": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": format!("{p}host-local"),
                        "ranges": ranges,
                        "routes": routes,
                        "dataDir": dir.path().join("leases")
                    }
                },
                { "type": format!("{p}portmap"), "capabilities": { "portMappings": true } },
                { "type": format!("{p}loopback") }
            ]
        });
        std::fs::create_dir_all(dir.path().join("net.d")).unwrap();
        std::fs::write(
            dir.path().join("net.d/10-test.conflist"),
            serde_json::to_vec_pretty(&conf).unwrap(),
        )
        .unwrap();
        Self {
            dir,
            bridge,
            subnet,
            gateway,
            name,
        }
    }

    pub fn options(&self, flavor: Flavor) -> ClientOptions {
        ClientOptions {
            conf_dir: self.dir.path().join("net.d"),
            bin_dirs: vec![flavor.bin_dir()],
            cache_dir: self.dir.path().join("cache"),
            timeout: Duration::from_secs(20),
        }
    }

    pub fn client(&self, flavor: Flavor) -> CniClient {
        CniClient::new(self.options(flavor))
    }

    /// The lease files currently held (IP-named files in the network's lease dir).
    pub fn leases(&self) -> Vec<String> {
        let d = self.dir.path().join("leases").join(&self.name);
        let Ok(rd) = std::fs::read_dir(d) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }
}

pub fn pod(ns: &Netns, ports: &[(u16, u16, &str)]) -> PodNetwork {
    PodNetwork {
        id: unique("pod"),
        netns: ns.path.clone(),
        ifname: "eth0".into(),
        name: format!("name-{}", ns.name),
        namespace: "default".into(),
        uid: unique("uid"),
        port_mappings: ports
            .iter()
            .map(|(h, c, p)| PortMapping {
                host_port: *h,
                container_port: *c,
                protocol: p.to_string(),
                host_ip: None,
            })
            .collect(),
        ..Default::default()
    }
}

/// A TCP listener inside `ns` that answers `count` connections with `reply` (on a background
/// thread), then closes so it does not pin the namespace.
pub fn serve(ns: &Netns, port: u16, reply: &'static str, count: usize) {
    let l: TcpListener = ns.run(|| TcpListener::bind(("0.0.0.0", port)).unwrap());
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten().take(count) {
            let _ = s.write_all(reply.as_bytes());
        }
    });
}

/// Wires `other` to `host` with a veth pair (`host_ip`/24 on the host side, `other_ip`/24 on the
/// other), so `other` plays a second machine on the host's network.
pub fn link_peer(host: &Netns, other: &Netns, host_ip: &str, other_ip: &str) {
    let a = unique("bta");
    let sh = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    sh(&[
        "-n",
        &host.name,
        "link",
        "add",
        &a,
        "type",
        "veth",
        "peer",
        "name",
        "eth9",
        "netns",
        &other.name,
    ]);
    sh(&[
        "-n",
        &host.name,
        "addr",
        "add",
        &format!("{host_ip}/24"),
        "dev",
        &a,
    ]);
    sh(&["-n", &host.name, "link", "set", &a, "up"]);
    sh(&[
        "-n",
        &other.name,
        "addr",
        "add",
        &format!("{other_ip}/24"),
        "dev",
        "eth9",
    ]);
    sh(&["-n", &other.name, "link", "set", "eth9", "up"]);
}

/// A UDP echo inside `ns` answering `count` datagrams.
pub fn serve_udp(ns: &Netns, port: u16, count: usize) {
    let s: UdpSocket = ns.run(|| UdpSocket::bind(("0.0.0.0", port)).unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..count {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        }
    });
}

/// Sends one datagram from inside `ns` and returns the reply.
pub fn udp_roundtrip(ns: &Netns, addr: &str, msg: &str) -> std::io::Result<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let msg = msg.to_string();
    ns.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.send_to(msg.as_bytes(), addr)?;
        let mut buf = [0u8; 512];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// Connects from inside `ns` and returns what the peer sent.
pub fn fetch(ns: &Netns, addr: &str) -> std::io::Result<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}
