//! Pod networking end to end: pods on the daemon's own test bridge, host ports, host-network pods and teardown.
//! All traffic stays on this machine: the bridge and subnet are the daemon's own, with no masquerade.

use std::io::{Read, Write};
use std::time::Duration;

use berth_cri::api::*;
use berth_tests::Daemon;
use berth_tests::kubelet::{Env, env, env_on};

fn pod_config(name: &str, network: NamespaceMode, ports: Vec<PortMapping>) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "net".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        port_mappings: ports,
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: network as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs a pod with one container running `args`; returns (pod id, container id, pod IP).
async fn pod_with(
    env: &mut Env,
    config: PodSandboxConfig,
    args: &[&str],
) -> (String, String, String) {
    let pod = env
        .c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let ctr = env
        .c
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "main".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: env.reg.reference.clone(),
                    ..Default::default()
                }),
                command: args.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    env.c
        .runtime
        .start_container(StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
    let ip = env
        .c
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
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
    (pod, ctr, ip)
}

async fn exec(env: &mut Env, id: &str, cmd: &[&str]) -> ExecSyncResponse {
    berth_tests::kubelet::exec(env, id, cmd, 20).await.unwrap()
}

const HTTPD: &[&str] = &[
    "sh",
    "-c",
    "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 80 -h /www",
];

/// GET / from `addr`, retrying while the server inside the pod comes up.
fn http_get(addr: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        match std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut body = String::new();
                let _ = s.read_to_string(&mut body);
                if body.contains("hello-from-pod") {
                    return body;
                }
                last = body;
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no answer from {addr}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_reach_each_other_by_ip() {
    let mut env = env().await;
    pods_reach_each_other(&mut env).await;
}

/// The reference plugins from Debian's containernetworking-plugins, driven by Berth, connect pods the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_plugins_connect_pods_too() {
    let n = std::process::id() % 200;
    let conflist = format!(
        r#"{{"cniVersion":"1.0.0","name":"reference","plugins":[
            {{"type":"bridge","bridge":"bref{n:x}","isGateway":true,"ipMasq":false,
              "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.{o}.250.0/24"}}]],"dataDir":"/run/berth-test-ipam-{n}"}}}},
            {{"type":"portmap","capabilities":{{"portMappings":true}}}},
            {{"type":"loopback"}}]}}"#,
        o = 100 + n % 100
    );
    let d = Daemon::start_with_network(&conflist).await.unwrap();
    let mut env = env_on(d).await;
    pods_reach_each_other(&mut env).await;
    drop(env);
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &format!("bref{n:x}")])
        .status();
    let _ = std::fs::remove_dir_all(format!("/run/berth-test-ipam-{n}"));
}

async fn pods_reach_each_other(env: &mut Env) {
    let (_, _, server_ip) =
        pod_with(env, pod_config("server", NamespaceMode::Pod, vec![]), HTTPD).await;
    let (_, client, client_ip) = pod_with(
        env,
        pod_config("client", NamespaceMode::Pod, vec![]),
        &["sleep", "3600"],
    )
    .await;
    assert!(
        !server_ip.is_empty() && server_ip != client_ip,
        "{server_ip} {client_ip}"
    );
    let mut body = String::new();
    for _ in 0..100 {
        // No `-T`: Debian's busybox-static 1.35 wget segfaults with it.
        let url = format!("http://{server_ip}/");
        let out = exec(env, &client, &["wget", "-q", "-O", "-", &url]).await;
        body = format!(
            "{} (stderr {:?}, exit {})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.exit_code
        );
        if body.contains("hello-from-pod") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(body.contains("hello-from-pod"), "{body}");
    // /etc/hosts names the pod's own IP.
    let hosts = exec(env, &client, &["cat", "/etc/hosts"]).await;
    assert!(String::from_utf8_lossy(&hosts.stdout).contains(&format!("{client_ip}\tclient")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_answers_on_loopback_and_on_the_hosts_own_address() {
    let mut env = env().await;
    let ports = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port: 18080,
        host_ip: String::new(),
    }];
    pod_with(
        &mut env,
        pod_config("published", NamespaceMode::Pod, ports),
        HTTPD,
    )
    .await;
    assert!(http_get("127.0.0.1:18080").contains("hello-from-pod"));
    if let Some(own) = host_address() {
        assert!(http_get(&format!("{own}:18080")).contains("hello-from-pod"));
    }
}

/// The host's first global IPv4 address, if it has one.
fn host_address() -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().filter(|l| !l.contains(" bt")).find_map(|l| {
        l.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .map(|a| a.split('/').next().unwrap_or("").to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_network_pod_sees_the_hosts_interfaces() {
    let mut env = env().await;
    let (_, ctr, ip) = pod_with(
        &mut env,
        pod_config("hostnet", NamespaceMode::Node, vec![]),
        &["sleep", "3600"],
    )
    .await;
    assert!(
        ip.is_empty(),
        "a host-network pod gets no pod IP from CNI: {ip}"
    );
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let out = exec(&mut env, &ctr, &["ls", "/sys/class/net"]).await;
    let mut seen: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    seen.sort();
    assert_eq!(seen, host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_pod_cycles_leave_no_links_leases_or_pins() {
    let mut env = env().await;
    let bridge = std::fs::read_to_string(&env.d.config_path)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("bridge = \"")
                .map(|v| v.trim_end_matches('"').to_string())
        })
        .unwrap();
    for i in 0..50 {
        let config = pod_config(&format!("cycle{i}"), NamespaceMode::Pod, vec![]);
        let id = env
            .c
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        env.c
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
        env.c
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .unwrap();
    }
    let ports = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &bridge])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ports.stdout).trim().is_empty(),
        "veths left on {bridge}: {}",
        String::from_utf8_lossy(&ports.stdout)
    );
    let leases = env.d.dir.path().join("root/cni/networks");
    let left: Vec<String> = walk(&leases)
        .into_iter()
        .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(left.is_empty(), "leases left: {left:?}");
    let pods = env.d.dir.path().join("s/pods");
    let pins: Vec<String> = std::fs::read_dir(&pods)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(pins.is_empty(), "pod state left: {pins:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_after_a_daemon_kill_leaves_no_veth_lease_or_port_rule() {
    let mut env = env().await;
    let ports = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port: 18081,
        host_ip: String::new(),
    }];
    let (pod, _, ip) = pod_with(
        &mut env,
        pod_config("crashy", NamespaceMode::Pod, ports),
        HTTPD,
    )
    .await;
    assert!(http_get("127.0.0.1:18081").contains("hello-from-pod"));

    env.d.kill().unwrap();
    env.d.spawn().await.unwrap();
    env.c = env.d.client().await.unwrap();
    env.c
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    env.c
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();

    let bridge = std::fs::read_to_string(&env.d.config_path)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("bridge = \"")
                .map(|v| v.trim_end_matches('"').to_string())
        })
        .unwrap();
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &bridge])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&links.stdout).trim().is_empty(),
        "veth left: {}",
        String::from_utf8_lossy(&links.stdout)
    );
    let leases = walk(&env.d.dir.path().join("root/cni/networks"));
    assert!(!leases.contains(&ip), "lease for {ip} left: {leases:?}");
    let rules = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains("18081"),
        "a port rule for 18081 is left"
    );
    assert!(
        std::net::TcpStream::connect_timeout(
            &"127.0.0.1:18081".parse().unwrap(),
            Duration::from_millis(500)
        )
        .is_err()
    );
}
