//! A CRI runtime under measurement, started on a private root, socket and pod network so runs never share state
//! and no pod traffic leaves the machine (a bridge and /24 of its own, no masquerade).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_cri::client::Client;

/// One daemon on a private directory; on drop its pods are removed, the daemon stopped, leftover mounts under its
/// directory detached, its bridge deleted and the directory removed.
pub struct Target {
    pub name: &'static str,
    pub socket: PathBuf,
    bridge: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// A bridge name and /24 unique to this bench process and runtime (`salt` tells the runtimes apart).
fn private_net(salt: u32) -> (String, String) {
    let pid = std::process::id();
    (
        format!("bb{salt}{pid:x}"),
        format!("10.{}.{}.0/24", 240 + salt, pid % 250),
    )
}

impl Target {
    /// Berth on its defaults, except for private paths and a private default pod network (its own plugins).
    pub async fn berth(bin: &Path) -> Result<Target> {
        // Short: a monitor's socket path (`<state>/containers/<64-hex id>/attach.sock`) must fit in 107 bytes.
        let dir = tempfile::Builder::new().prefix("bb-").tempdir_in("/tmp")?;
        let (bridge, subnet) = private_net(0);
        let d = dir.path().display().to_string();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "root = \"{d}/root\"\nstate = \"{d}/s\"\nsocket = \"{d}/berth.sock\"\nlog_level = \"warn\"\n\n\
                 [cni]\nconf_dir = \"{d}/net.d\"\n\n\
                 [cni.default_network]\nbridge = \"{bridge}\"\nsubnet = \"{subnet}\"\nip_masq = false\n"
            ),
        )?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log"))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Self::ready("berth", dir, "berth.sock", bridge, child).await
    }

    /// containerd 1.6's CRI plugin (runc) on a private root; `registry` (host:port) is pulled from over plain http.
    /// `sandbox_image` is its pause image; pods get the reference bridge + host-local + portmap plugins (and
    /// containerd's own loopback), like Berth's default network.
    pub async fn containerd(registry: &str, sandbox_image: Option<&str>) -> Result<Target> {
        let dir = tempfile::Builder::new().prefix("bc-").tempdir_in("/tmp")?;
        let (bridge, subnet) = private_net(1);
        let d = dir.path().display().to_string();
        let hosts = dir.path().join("certs.d").join(registry);
        std::fs::create_dir_all(&hosts)?;
        std::fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"http://{registry}\"\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        std::fs::create_dir_all(dir.path().join("net.d"))?;
        let conflist = format!(
            r#"{{"cniVersion": "1.0.0", "name": "bench", "plugins": [
  {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]], "routes": [{{"dst": "0.0.0.0/0"}}],
             "dataDir": "{d}/cni-networks"}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}"#
        );
        std::fs::write(dir.path().join("net.d/10-bench.conflist"), conflist)?;
        let sandbox = sandbox_image
            .map(|i| format!("  sandbox_image = \"{i}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
{sandbox}  stream_server_port = "0"
  # Root lacks CAP_SYS_RESOURCE here: never ask for a lower oom_score_adj than containerd's own.
  restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{d}/certs.d"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{d}/net.d"
"#
            ),
        )?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log"))?)
            .spawn()
            .context("starting containerd")?;
        Self::ready("containerd", dir, "containerd.sock", bridge, child).await
    }

    async fn ready(
        name: &'static str,
        dir: tempfile::TempDir,
        sock: &str,
        bridge: String,
        child: Child,
    ) -> Result<Target> {
        // From here on, Drop cleans up whatever happens.
        let mut target = Target {
            name,
            socket: dir.path().join(sock),
            bridge,
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = target.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                target.child = None;
                bail!("{name} exited with {status}:\n{}", target.log());
            }
            if let Ok(mut c) = Client::connect(&target.socket).await
                && c.image
                    .image_fs_info(berth_cri::api::ImageFsInfoRequest {})
                    .await
                    .is_ok()
            {
                return Ok(target);
            }
            if Instant::now() > deadline {
                bail!("{name} did not answer on {}", target.socket.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(&self.socket).await?)
    }

    /// The private directory: every path the daemon and its per-pod processes use contains it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.child.is_some() {
            berth_cri::client::remove_all_pods_blocking(&self.socket);
        }
        self.stop_daemon();
        berth_testkit::cleanup::detach_mounts_under(self.dir.path());
        // Links outlive the daemon that made them.
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

/// containerd is measured only where it is installed.
pub fn containerd_installed() -> bool {
    Command::new("containerd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
