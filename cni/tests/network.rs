//! Pod networking end to end, as root, inside throwaway namespaces: our plugins and the
//! reference plugins driven by the same client, plus our plugins driven directly by the spec.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use berth_cni::client::CniResult;
use common::{Flavor, Netns, TestNet, fetch, pod, serve, serve_udp, udp_roundtrip};
use serde_json::Value;

/// Two pods on one bridge reach each other; a hostPort answers on 127.0.0.1 and on the
/// bridge's gateway address; DEL removes veths, leases and NAT rules.
fn connectivity(flavor: Flavor, version: &str) {
    let host = Netns::new("bth");
    let net = TestNet::new(flavor, version);
    let client = net.client(flavor);
    let (pa, pb) = (Netns::new("btp"), Netns::new("btp"));
    let a = pod(&pa, &[]);
    let b = pod(&pb, &[(18080, 80, "tcp"), (15353, 53, "udp")]);
    // A second "machine" on the host's network, to reach the hostPort from outside.
    let other = Netns::new("bto");
    common::link_peer(&host, &other, "192.168.251.1", "192.168.251.2");
    let (ra, rb): (CniResult, CniResult) =
        host.block_on(|| async { (client.add(&a).await.unwrap(), client.add(&b).await.unwrap()) });
    let ip_b = rb.sandbox_ips()[0].addr;
    assert_eq!(ra.cni_version, version);
    assert!(
        net.subnet
            .starts_with(&ra.sandbox_ips()[0].trunc().addr.to_string())
    );
    assert_eq!(net.leases().len(), 2);

    serve(&pb, 80, "hello", 4);
    serve_udp(&pb, 53, 2);
    assert_eq!(
        fetch(&pa, &format!("{ip_b}:80")).unwrap(),
        "hello",
        "pod to pod"
    );
    assert_eq!(
        fetch(&host, "127.0.0.1:18080").unwrap(),
        "hello",
        "hostPort on 127.0.0.1"
    );
    assert_eq!(
        fetch(&host, &format!("{}:18080", net.gateway)).unwrap(),
        "hello",
        "hostPort on the gateway address"
    );
    assert_eq!(
        fetch(&other, "192.168.251.1:18080").unwrap(),
        "hello",
        "hostPort from another host"
    );
    assert_eq!(
        udp_roundtrip(&host, "127.0.0.1:15353", "ping").unwrap(),
        "ping",
        "udp hostPort on 127.0.0.1"
    );
    assert_eq!(
        udp_roundtrip(&other, "192.168.251.1:15353", "pong").unwrap(),
        "pong",
        "udp hostPort from another host"
    );

    host.block_on(|| async {
        let again = client.add(&a).await.unwrap_err();
        assert!(
            matches!(again, berth_cni::client::CniError::AlreadyAdded { .. }),
            "{again}"
        );
        client.check(&a).await.unwrap();
        client.del(&a).await.unwrap();
        client.del(&b).await.unwrap();
        // DEL is idempotent.
        client.del(&b).await.unwrap();
    });
    let links = host.link_names();
    assert!(
        links.iter().all(|l| !l.starts_with("veth")),
        "veths left: {links:?}"
    );
    assert!(net.leases().is_empty(), "leases left: {:?}", net.leases());
    assert!(
        !host.nft_ruleset().contains(&ip_b.to_string()),
        "nat rules left:\n{}",
        host.nft_ruleset()
    );
    assert!(fetch(&host, "127.0.0.1:18080").is_err());
}

#[test]
fn berth_plugins_connect_pods_and_publish_ports() {
    require_root!();
    connectivity(Flavor::Berth, "1.0.0");
}

#[test]
fn berth_plugins_speak_0_4_0_and_1_1_0() {
    require_root!();
    connectivity(Flavor::Berth, "0.4.0");
    connectivity(Flavor::Berth, "1.1.0");
}

#[test]
fn reference_plugins_work_through_the_same_client() {
    require_root!();
    if !std::path::Path::new(common::REFERENCE_BIN_DIR)
        .join("bridge")
        .exists()
    {
        eprintln!("skipped: reference plugins not installed");
        return;
    }
    connectivity(Flavor::Reference, "1.0.0");
}

#[test]
fn fifty_add_del_cycles_leave_nothing() {
    require_root!();
    let host = Netns::new("bth");
    let net = TestNet::new(Flavor::Berth, "1.0.0");
    let client = net.client(Flavor::Berth);
    let p = Netns::new("btp");
    host.block_on(|| async {
        for i in 0..50u16 {
            let mut pn = pod(&p, &[(20000 + i, 80, "tcp"), (20000 + i, 53, "udp")]);
            pn.id = format!("cycle{i}");
            client.add(&pn).await.unwrap();
            client.del(&pn).await.unwrap();
        }
    });
    let links = host.link_names();
    assert!(
        links.iter().all(|l| l == "lo" || *l == net.bridge),
        "links left: {links:?}"
    );
    assert!(p.link_names().iter().all(|l| l == "lo"), "pod links left");
    assert!(net.leases().is_empty(), "leases left: {:?}", net.leases());
    let rules = host.nft_ruleset();
    assert!(!rules.contains("berth_portmap"), "nft left:\n{rules}");
    let cache = std::fs::read_dir(net.dir.path().join("cache/results"))
        .unwrap()
        .count();
    assert_eq!(cache, 0, "cache entries left");
}

#[test]
fn cached_result_allows_del_after_restart_and_config_change() {
    require_root!();
    let host = Netns::new("bth");
    let net = TestNet::new(Flavor::Berth, "1.0.0");
    let p = Netns::new("btp");
    let pn = pod(&p, &[(18081, 80, "tcp")]);
    host.block_on(|| async { net.client(Flavor::Berth).add(&pn).await.unwrap() });
    // "Restart": a new client, and the network config is gone from the conf dir.
    std::fs::remove_file(net.dir.path().join("net.d/10-test.conflist")).unwrap();
    let fresh = net.client(Flavor::Berth);
    // The restarted daemon knows only the sandbox id and interface; the netns path is cached.
    let pn = berth_cni::client::PodNetwork {
        netns: Default::default(),
        ..pn.clone()
    };
    host.block_on(|| async { fresh.del(&pn).await.unwrap() });
    assert!(net.leases().is_empty());
    assert!(host.link_names().iter().all(|l| !l.starts_with("veth")));
    assert!(!host.nft_ruleset().contains("dnat"));
    assert!(p.link_names().iter().all(|l| l == "lo"));
}

/// Runs one of our plugins the way any runtime would: CNI_* env, config on stdin.
fn exec_plugin(host: &Netns, bin: &str, env: &[(&str, &str)], stdin: &Value) -> (bool, Value) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &host.name, bin]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("CNI_PATH", common::our_bin_dir());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(stdin).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap()
    };
    (out.status.success(), v)
}

/// Checks the shape the spec requires of an ADD result.
fn assert_spec_result(v: &Value, version: &str, netns: &str) {
    assert_eq!(v["cniVersion"], version);
    let ifaces = v["interfaces"].as_array().expect("interfaces");
    for i in ifaces {
        assert!(i["name"].as_str().is_some_and(|n| !n.is_empty()));
        let mac = i["mac"].as_str().unwrap_or_default();
        assert_eq!(mac.len(), 17, "mac {mac}");
    }
    let ips = v["ips"].as_array().expect("ips");
    assert!(!ips.is_empty());
    for ip in ips {
        let idx = ip["interface"].as_u64().expect("interface index") as usize;
        assert_eq!(
            ifaces[idx]["sandbox"], netns,
            "ip points at the sandbox interface"
        );
        ip["address"]
            .as_str()
            .unwrap()
            .parse::<berth_cni::cidr::IpNet>()
            .unwrap();
        assert_eq!(
            ip.get("version").is_some(),
            version.starts_with("0."),
            "ips[].version only in 0.x"
        );
    }
    for r in v["routes"].as_array().into_iter().flatten() {
        r["dst"]
            .as_str()
            .unwrap()
            .parse::<berth_cni::cidr::IpNet>()
            .unwrap();
    }
}

#[test]
fn plugins_driven_by_the_spec_produce_valid_results() {
    require_root!();
    let host = Netns::new("bth");
    let p = Netns::new("btp");
    let dir = tempfile::tempdir().unwrap();
    let bin = |n: &str| common::our_bin_dir().join(n).to_string_lossy().into_owned();
    let netns = p.path.to_string_lossy().into_owned();
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        let bridge = common::unique("bt");
        let conf = serde_json::json!({
            "cniVersion": version, "name": "specnet", "type": "berth-bridge", "bridge": bridge,
            "isGateway": true, "mtu": 1400,
            "ipam": { "type": "berth-host-local", "dataDir": dir.path(),
                      "ranges": [[{"subnet": "10.231.7.0/24"}], [{"subnet": "fd00:231:7::/64"}]],
                      "routes": [{"dst": "0.0.0.0/0"}] }
        });
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "spec1"),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
        ];
        let (ok, v) = exec_plugin(&host, &bin("berth-bridge"), &env, &conf);
        assert!(ok, "{v}");
        assert_spec_result(&v, version, &netns);
        assert_eq!(v["ips"].as_array().unwrap().len(), 2, "dual stack: {v}");
        let v4 = v["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let lease = dir.path().join("specnet").join(&v4);
        assert!(lease.exists(), "lease file {lease:?}");
        let (ok, again) = exec_plugin(&host, &bin("berth-bridge"), &env, &conf);
        assert!(
            !ok && again["code"] == 102,
            "a repeated ADD is refused: {again}"
        );
        assert!(lease.exists(), "and leaves the first attachment's lease");
        assert!(
            p.link_names().iter().any(|l| l == "eth0"),
            "and its interface"
        );

        let mut chained = serde_json::json!({"cniVersion": version, "name": "specnet", "type": "berth-portmap",
            "runtimeConfig": {"portMappings": [{"hostPort": 18090, "containerPort": 80, "protocol": "tcp"}]}});
        chained["prevResult"] = v.clone();
        let (ok, pv) = exec_plugin(&host, &bin("berth-portmap"), &env, &chained);
        assert!(ok, "{pv}");
        assert_eq!(pv, v, "portmap passes prevResult through");
        if version != "0.4.0" {
            let mut lo =
                serde_json::json!({"cniVersion": version, "name": "lo", "type": "berth-loopback"});
            let (ok, lv) = exec_plugin(&host, &bin("berth-loopback"), &env, &lo);
            assert!(ok, "{lv}");
            assert_eq!(lv["interfaces"][0]["name"], "lo");
            lo["prevResult"] = v.clone();
            let (_, lv) = exec_plugin(&host, &bin("berth-loopback"), &env, &lo);
            assert_eq!(lv, v);
        }
        let mut check = conf.clone();
        check["prevResult"] = v.clone();
        let cenv = [
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "spec1"),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
        ];
        let (ok, cv) = exec_plugin(&host, &bin("berth-bridge"), &cenv, &check);
        assert!(ok, "check: {cv}");

        let denv = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "spec1"),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
        ];
        assert!(exec_plugin(&host, &bin("berth-portmap"), &denv, &chained).0);
        assert!(exec_plugin(&host, &bin("berth-bridge"), &denv, &conf).0);
        assert!(
            exec_plugin(&host, &bin("berth-bridge"), &denv, &conf).0,
            "DEL twice is fine"
        );
        assert!(!lease.exists());
        assert!(!host.nft_ruleset().contains("dnat"));
        assert!(p.link_names().iter().all(|l| l == "lo"));
    }
    // Errors come back as spec error JSON.
    let bad = serde_json::json!({"cniVersion": "1.0.0", "name": "x", "type": "berth-bridge", "ipam": {"type": "berth-host-local"}});
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "e1"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    let (ok, v) = exec_plugin(&host, &bin("berth-bridge"), &env, &bad);
    assert!(!ok);
    assert_eq!(v["code"], 7, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("no ranges"), "{v}");
    let (ok, v) = exec_plugin(
        &host,
        &bin("berth-bridge"),
        &[("CNI_COMMAND", "VERSION")],
        &Value::Null,
    );
    assert!(ok);
    assert!(
        v["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "1.1.0")
    );
}

#[test]
fn concurrent_adds_get_distinct_addresses_and_del_after_netns_is_gone() {
    require_root!();
    let host = Netns::new("bth");
    let net = TestNet::new(Flavor::Berth, "1.0.0");
    let client = net.client(Flavor::Berth);
    let pods: Vec<Netns> = (0..8).map(|_| Netns::new("btp")).collect();
    let nets: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| pod(p, &[(21000 + i as u16, 80, "tcp")]))
        .collect();
    let results = host.block_on(|| async {
        let futs = nets.iter().map(|n| client.add(n));
        let mut out = Vec::new();
        for r in futures_join(futs).await {
            out.push(r.unwrap());
        }
        out
    });
    let mut ips: Vec<_> = results.iter().map(|r| r.sandbox_ips()[0].addr).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 8, "distinct addresses");
    assert_eq!(net.leases().len(), 8);
    // The pods' namespaces vanish before DEL (runtime crashed and cleaned up its mounts).
    drop(pods);
    host.block_on(|| async {
        for n in &nets {
            client.del(n).await.unwrap();
        }
    });
    assert!(net.leases().is_empty(), "leases left: {:?}", net.leases());
    assert!(
        !host.nft_ruleset().contains("dnat"),
        "{}",
        host.nft_ruleset()
    );
    assert!(host.link_names().iter().all(|l| !l.starts_with("veth")));
}

/// Polls all futures together on the current task (no extra dependency for join_all).
async fn futures_join<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<_> = futs.into_iter().map(Box::pin).map(Some).collect();
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, slot) in set.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        out[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("polled to completion"))
        .collect()
}

#[test]
fn gc_releases_what_the_runtime_forgot() {
    require_root!();
    let host = Netns::new("bth");
    let net = TestNet::new(Flavor::Berth, "1.1.0");
    let client = net.client(Flavor::Berth);
    let (na, nb, nc) = (Netns::new("btp"), Netns::new("btp"), Netns::new("btp"));
    let (a, b, c) = (
        pod(&na, &[(22001, 80, "tcp")]),
        pod(&nb, &[(22002, 80, "tcp")]),
        pod(&nc, &[(22003, 80, "tcp")]),
    );
    let rb = host.block_on(|| async {
        client.add(&a).await.unwrap();
        let rb = client.add(&b).await.unwrap();
        client.add(&c).await.unwrap();
        rb
    });
    // `a` was lost entirely (cache gone, netns gone); `c` is cached but no longer wanted.
    let cache = net.dir.path().join("cache/results");
    std::fs::remove_file(cache.join(format!("{}-{}-eth0", net.name, a.id))).unwrap();
    drop(na);
    host.block_on(|| async {
        client
            .gc(&[(b.id.clone(), "eth0".to_string())])
            .await
            .unwrap()
    });
    let ip_b = rb.sandbox_ips()[0].addr.to_string();
    assert_eq!(
        net.leases(),
        std::slice::from_ref(&ip_b),
        "only b keeps its lease"
    );
    let rules = host.nft_ruleset();
    assert_eq!(rules.matches("dnat ip to").count(), 1, "{rules}");
    assert!(rules.contains(&format!("{ip_b}:80")), "{rules}");
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        1,
        "only b stays cached"
    );
    assert!(nc.link_names().iter().all(|l| l == "lo"), "c was torn down");
    host.block_on(|| async { client.del(&b).await.unwrap() });
}

#[test]
fn dual_stack_pods_reach_each_other_and_host_ports_over_ipv6() {
    require_root!();
    let host = Netns::new("bth");
    let net = TestNet::dual(Flavor::Berth, "1.0.0");
    let client = net.client(Flavor::Berth);
    let (pa, pb) = (Netns::new("btp"), Netns::new("btp"));
    let a = pod(&pa, &[]);
    let b = pod(&pb, &[(18080, 80, "tcp")]);
    let rb = host.block_on(|| async {
        client.add(&a).await.unwrap();
        client.add(&b).await.unwrap()
    });
    let v6 = rb
        .ips
        .iter()
        .find(|i| !i.address.is_ipv4())
        .expect("an ipv6 address");
    let gw6 = v6.gateway.expect("ipv6 gateway");
    let l: std::net::TcpListener = pb.run(|| std::net::TcpListener::bind("[::]:80").unwrap());
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten().take(2) {
            let _ = std::io::Write::write_all(&mut s, b"six");
        }
    });
    assert_eq!(
        fetch(&pa, &format!("[{}]:80", v6.address.addr)).unwrap(),
        "six",
        "pod to pod over ipv6"
    );
    assert_eq!(
        fetch(&host, &format!("[{gw6}]:18080")).unwrap(),
        "six",
        "hostPort on the ipv6 gateway"
    );
    host.block_on(|| async {
        client.del(&a).await.unwrap();
        client.del(&b).await.unwrap();
    });
    assert!(net.leases().is_empty());
    assert!(!host.nft_ruleset().contains("dnat"));
}

/// Regression: a UDP flow seen before its hostPort existed keeps an un-NATed conntrack entry;
/// portmap ADD must drop it or the mapping is bypassed until the entry times out.
#[test]
fn udp_host_port_serves_a_flow_seen_before_the_mapping() {
    require_root!();
    let host = Netns::new("bth");
    let net = TestNet::new(Flavor::Berth, "1.0.0");
    let client = net.client(Flavor::Berth);
    let (pa, pb) = (Netns::new("btp"), Netns::new("btp"));
    // Pod a's mapping brings NAT, and with it conntrack, up in the host namespace.
    let a = pod(&pa, &[(18080, 80, "tcp")]);
    let b = pod(&pb, &[(15354, 53, "udp")]);
    host.block_on(|| async { client.add(&a).await.unwrap() });
    let sock = host.run(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        s
    });
    sock.send_to(b"early", "127.0.0.1:15354").unwrap();
    host.block_on(|| async { client.add(&b).await.unwrap() });
    serve_udp(&pb, 53, 1);
    sock.send_to(b"late", "127.0.0.1:15354").unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("a reply through the new mapping");
    assert_eq!(&buf[..n], b"late");
    host.block_on(|| async {
        client.del(&a).await.unwrap();
        client.del(&b).await.unwrap();
    });
}

/// berth-bridge delegating to another IPAM executable (the reference host-local) through
/// CNI_PATH, rather than running our host-local in-process.
#[test]
fn berth_bridge_delegates_to_a_foreign_ipam_plugin() {
    require_root!();
    if !std::path::Path::new(common::REFERENCE_BIN_DIR)
        .join("host-local")
        .exists()
    {
        eprintln!("skipped: reference plugins not installed");
        return;
    }
    let host = Netns::new("bth");
    let p = Netns::new("btp");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("net.d")).unwrap();
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "mixed",
        "plugins": [{ "type": "berth-bridge", "bridge": common::unique("bt"), "isGateway": true,
            "ipam": { "type": "host-local", "ranges": [[{"subnet": "10.232.9.0/24"}]],
                      "dataDir": dir.path().join("leases") } }]
    });
    std::fs::write(dir.path().join("net.d/10.conflist"), conf.to_string()).unwrap();
    let client = berth_cni::client::CniClient::new(berth_cni::client::ClientOptions {
        conf_dir: dir.path().join("net.d"),
        bin_dirs: vec![common::our_bin_dir(), common::REFERENCE_BIN_DIR.into()],
        cache_dir: dir.path().join("cache"),
        timeout: std::time::Duration::from_secs(20),
    });
    let pn = pod(&p, &[]);
    let r = host.block_on(|| async { client.add(&pn).await.unwrap() });
    let ip = r.sandbox_ips()[0].addr.to_string();
    assert!(ip.starts_with("10.232.9."), "{ip}");
    assert!(dir.path().join("leases/mixed").join(&ip).exists());
    host.block_on(|| async { client.del(&pn).await.unwrap() });
    assert!(!dir.path().join("leases/mixed").join(&ip).exists());
    assert!(p.link_names().iter().all(|l| l == "lo"));
}

/// The default network Berth writes (bridge, host-local, portmap, loopback) works as shipped;
/// only masquerading is off, as it must be in tests.
#[test]
fn default_network_serves_pods_and_host_ports() {
    require_root!();
    let host = Netns::new("bth");
    let dir = tempfile::tempdir().unwrap();
    let opts = berth_cni::client::ClientOptions {
        conf_dir: dir.path().join("net.d"),
        bin_dirs: vec![common::our_bin_dir()],
        cache_dir: dir.path().join("cache"),
        timeout: std::time::Duration::from_secs(20),
    };
    let client = berth_cni::client::CniClient::new(opts);
    let def = berth_cni::client::config::DefaultNetwork {
        bridge: common::unique("bt"),
        subnet: "10.233.0.0/16".into(),
        ip_masq: false,
        data_dir: Some(dir.path().join("leases")),
        ..Default::default()
    };
    client.ensure_default(&def).unwrap().expect("written");
    let p = Netns::new("btp");
    let pn = pod(&p, &[(18080, 80, "tcp")]);
    host.block_on(|| async {
        client.ready().await.unwrap();
        client.add(&pn).await.unwrap()
    });
    serve(&p, 80, "default", 1);
    assert_eq!(fetch(&host, "127.0.0.1:18080").unwrap(), "default");
    host.block_on(|| async { client.del(&pn).await.unwrap() });
    assert!(!host.nft_ruleset().contains("dnat"));
}
