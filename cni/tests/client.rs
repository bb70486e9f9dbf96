//! The client against scripted fake plugins: what it passes (env, capabilities, prevResult),
//! how it reports failures and hangs, STATUS/CHECK gating, defaults and readiness. No root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_cni::client::config::DefaultNetwork;
use berth_cni::client::{ClientOptions, CniClient, CniError, PodNetwork, PortMapping};
use serde_json::Value;

/// A fake plugin: records its stdin and environment under `<dir>/log/<type>.<command>.*` and
/// prints a result naming itself (or whatever `body` does instead).
fn fake(bin: &Path, name: &str, body: &str) {
    let script = format!(
        "#!/bin/sh\nLOG=\"$(dirname \"$0\")/../log\"\nmkdir -p \"$LOG\"\necho \"{name} $CNI_COMMAND\" >> \"$LOG/order\"\ncat > \"$LOG/{name}.$CNI_COMMAND.stdin\"\n\
         env | grep '^CNI_' | sort > \"$LOG/{name}.$CNI_COMMAND.env\"\n{body}\n"
    );
    let p = bin.join(name);
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const OK_RESULT: &str = r#"case "$CNI_COMMAND" in ADD) echo '{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/x"}],"ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.1.0.10"]}}';; esac"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(conflist: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["bin", "net.d"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("net.d/10-t.conflist"), conflist.to_string()).unwrap();
        Self { dir }
    }
    fn bin(&self) -> std::path::PathBuf {
        self.dir.path().join("bin")
    }
    fn opts(&self, timeout: Duration) -> ClientOptions {
        ClientOptions {
            conf_dir: self.dir.path().join("net.d"),
            bin_dirs: vec![self.bin()],
            cache_dir: self.dir.path().join("cache"),
            timeout,
        }
    }
    fn log(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("log").join(f)).unwrap_or_default()
    }
    fn stdin(&self, f: &str) -> Value {
        serde_json::from_str(&self.log(f)).unwrap()
    }
}

fn pod() -> PodNetwork {
    PodNetwork {
        id: "sandbox1".into(),
        netns: "/run/netns/fake".into(),
        name: "web".into(),
        namespace: "prod".into(),
        uid: "u-1".into(),
        port_mappings: vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: None,
        }],
        ..Default::default()
    }
}

fn chain(version: &str) -> Value {
    serde_json::json!({"cniVersion": version, "name": "t", "plugins": [
        {"type": "main", "foo": 1},
        {"type": "pm", "capabilities": {"portMappings": true, "bandwidth": true}}
    ]})
}

#[tokio::test]
async fn add_passes_env_capabilities_and_prev_result_then_del_reverses() {
    let e = Env::new(chain("1.1.0"));
    fake(&e.bin(), "main", OK_RESULT);
    fake(&e.bin(), "pm", OK_RESULT);
    let c = CniClient::new(e.opts(Duration::from_secs(10)));
    let r = c.add(&pod()).await.unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.1.0.5/24");
    assert_eq!(r.dns.nameservers, ["10.1.0.10"]);

    let env = e.log("main.ADD.env");
    for want in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=sandbox1",
        "CNI_NETNS=/run/netns/fake",
        "CNI_IFNAME=eth0",
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=u-1",
    ] {
        assert!(env.lines().any(|l| l == want), "missing {want} in\n{env}");
    }
    assert!(env.contains(&format!("CNI_PATH={}", e.bin().display())));
    let main_in = e.stdin("main.ADD.stdin");
    assert_eq!(
        (main_in["name"].as_str(), main_in["cniVersion"].as_str()),
        (Some("t"), Some("1.1.0"))
    );
    assert_eq!(main_in["foo"], 1);
    assert!(
        main_in.get("runtimeConfig").is_none(),
        "undeclared capabilities stay out"
    );
    assert!(main_in.get("prevResult").is_none());
    let pm_in = e.stdin("pm.ADD.stdin");
    assert_eq!(pm_in["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert_eq!(pm_in["runtimeConfig"]["portMappings"][0]["protocol"], "tcp");
    assert!(
        pm_in["runtimeConfig"].get("bandwidth").is_none(),
        "only capabilities the runtime has"
    );
    assert_eq!(pm_in["prevResult"]["ips"][0]["address"], "10.1.0.5/24");

    c.check(&pod()).await.unwrap();
    assert_eq!(
        e.stdin("main.CHECK.stdin")["prevResult"]["ips"][0]["address"],
        "10.1.0.5/24"
    );

    c.del(&pod()).await.unwrap();
    let order: Vec<String> = e.log("order").lines().map(str::to_string).collect();
    assert_eq!(
        order,
        [
            "main ADD",
            "pm ADD",
            "main CHECK",
            "pm CHECK",
            "pm DEL",
            "main DEL"
        ]
    );
    assert_eq!(
        e.stdin("main.DEL.stdin")["prevResult"]["ips"][0]["address"],
        "10.1.0.5/24"
    );
    assert!(e.stdin("pm.DEL.stdin")["runtimeConfig"]["portMappings"].is_array());
    assert!(
        !e.dir.path().join("cache/results/t-sandbox1-eth0").exists(),
        "cache entry removed"
    );
}

#[tokio::test]
async fn failing_plugin_message_reaches_the_caller() {
    let e = Env::new(chain("1.0.0"));
    fake(
        &e.bin(),
        "main",
        r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"bad subnet","details":"10.0.0.0/33"}'; exit 1"#,
    );
    fake(&e.bin(), "pm", "");
    let c = CniClient::new(e.opts(Duration::from_secs(10)));
    match c.add(&pod()).await {
        Err(CniError::Plugin {
            plugin,
            code,
            msg,
            details,
            ..
        }) => {
            assert_eq!(
                (plugin.as_str(), code, msg.as_str(), details.as_str()),
                ("main", 7, "bad subnet", "10.0.0.0/33")
            );
        }
        other => panic!("{other:?}"),
    }
    let order: Vec<String> = e.log("order").lines().map(str::to_string).collect();
    assert_eq!(
        order,
        ["main ADD", "pm DEL", "main DEL"],
        "a failed ADD is rolled back"
    );
    let e2 = Env::new(chain("1.0.0"));
    fake(&e2.bin(), "main", "echo 'segfault-ish' >&2; exit 2");
    let err = CniClient::new(e2.opts(Duration::from_secs(10)))
        .add(&pod())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("segfault-ish"), "{err}");
    let e3 = Env::new(chain("1.0.0"));
    let err = CniClient::new(e3.opts(Duration::from_secs(10)))
        .add(&pod())
        .await
        .unwrap_err();
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{err}");
}

#[tokio::test]
async fn hung_plugin_is_timed_out_and_killed() {
    let e = Env::new(chain("1.0.0"));
    fake(
        &e.bin(),
        "main",
        r#"echo $$ > "$LOG/pid"; sleep 30 & echo $! > "$LOG/child"; wait"#,
    );
    let c = CniClient::new(e.opts(Duration::from_millis(500)));
    let t = Instant::now();
    let err = c.add(&pod()).await.unwrap_err();
    assert!(matches!(err, CniError::Timeout { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // The plugin's own children die with it (process group kill).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let child = e.log("child").trim().to_string();
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "grandchild still alive: {stat}"
    );
}

#[tokio::test]
async fn status_only_for_1_1_and_check_not_for_0_3() {
    let e = Env::new(chain("1.1.0"));
    fake(
        &e.bin(),
        "main",
        r#"[ "$CNI_COMMAND" = STATUS ] && { echo '{"cniVersion":"1.1.0","code":50,"msg":"no route to apiserver"}'; exit 1; }; true"#,
    );
    fake(&e.bin(), "pm", "");
    let c = CniClient::new(e.opts(Duration::from_secs(10)));
    let err = c.ready().await.unwrap_err();
    assert!(err.to_string().contains("no route to apiserver"), "{err}");
    assert!(!e.log("main.STATUS.env").contains("CNI_CONTAINERID"));

    let e = Env::new(chain("1.0.0"));
    fake(&e.bin(), "main", "exit 1");
    fake(&e.bin(), "pm", "exit 1");
    CniClient::new(e.opts(Duration::from_secs(10)))
        .ready()
        .await
        .unwrap();

    let e = Env::new(chain("0.3.1"));
    fake(&e.bin(), "main", "exit 1");
    fake(&e.bin(), "pm", "exit 1");
    CniClient::new(e.opts(Duration::from_secs(10)))
        .check(&pod())
        .await
        .unwrap();
}

#[tokio::test]
async fn reloads_when_the_conf_dir_changes() {
    let e = Env::new(chain("1.0.0"));
    let c = CniClient::new(e.opts(Duration::from_secs(10)));
    assert_eq!(c.network().unwrap().name(), "t");
    let mut other = chain("1.0.0");
    other["name"] = "first".into();
    std::fs::write(
        e.dir.path().join("net.d/05-first.conflist"),
        other.to_string(),
    )
    .unwrap();
    assert_eq!(c.network().unwrap().name(), "first");
}

#[tokio::test]
async fn default_network_and_readiness_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClientOptions {
        conf_dir: dir.path().join("net.d"),
        bin_dirs: vec![dir.path().join("empty-bin")],
        cache_dir: dir.path().join("cache"),
        timeout: Duration::from_secs(10),
    };
    let c = CniClient::new(opts.clone());
    let err = c.ready().await.unwrap_err();
    assert!(err.to_string().contains("no network config found"), "{err}");
    let written = c
        .ensure_default(&DefaultNetwork::default())
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_slice(&std::fs::read(written).unwrap()).unwrap();
    assert_eq!(v["plugins"][0]["bridge"], "berth0");
    assert_eq!(
        v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        "10.88.0.0/16"
    );
    let err = c.ready().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("cni plugin berth-bridge not found"),
        "{err}"
    );
    let ours = Path::new(env!("CARGO_BIN_EXE_berth-bridge"))
        .parent()
        .unwrap()
        .to_path_buf();
    let c = CniClient::new(ClientOptions {
        bin_dirs: vec![ours],
        ..opts
    });
    c.ready().await.unwrap();
}

/// The daemon runs these from tonic handlers on a multi-threaded runtime.
#[test]
fn client_futures_are_send_and_client_is_shareable() {
    fn send<T: Send>(_: &T) {}
    fn shareable<T: Send + Sync>() {}
    shareable::<CniClient>();
    let c = CniClient::new(ClientOptions::default());
    let p = pod();
    send(&c.add(&p));
    send(&c.del(&p));
    send(&c.check(&p));
    send(&c.ready());
    send(&c.gc(&[]));
}
