//! A CRI runtime under measurement, started on a private root so runs never share state.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_cri::client::Client;

/// One daemon on a private directory; stopped and removed on drop.
pub struct Target {
    pub socket: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Target {
    /// Berth on its defaults, with `127.0.0.1:*` registries reachable over http (always true for loopback).
    pub async fn berth(bin: &Path) -> Result<Target> {
        let dir = tempfile::Builder::new().prefix("bench-berth-").tempdir_in("/var/tmp")?;
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "root = \"{0}/root\"\nstate = \"{0}/state\"\nsocket = \"{0}/berth.sock\"\nlog_level = \"warn\"\n",
                dir.path().display()
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
        Self::ready("berth", dir, "berth.sock", child).await
    }

    /// containerd 1.6's CRI plugin on a private root; `registry` (host:port) is pulled from over plain http.
    pub async fn containerd(registry: &str) -> Result<Target> {
        let dir = tempfile::Builder::new().prefix("bench-containerd-").tempdir_in("/var/tmp")?;
        let d = dir.path().display().to_string();
        let hosts = dir.path().join("certs.d").join(registry);
        std::fs::create_dir_all(&hosts)?;
        std::fs::write(
            hosts.join("hosts.toml"),
            format!("server = \"http://{registry}\"\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
        )?;
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
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
        Self::ready("containerd", dir, "containerd.sock", child).await
    }

    async fn ready(name: &'static str, dir: tempfile::TempDir, sock: &str, mut child: Child) -> Result<Target> {
        let socket = dir.path().join(sock);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
                bail!("{name} exited with {status}:\n{log}");
            }
            if let Ok(mut c) = Client::connect(&socket).await
                && c.image.image_fs_info(berth_cri::api::ImageFsInfoRequest {}).await.is_ok()
            {
                return Ok(Target {
                    socket,
                    child,
                    _dir: dir,
                });
            }
            if Instant::now() > deadline {
                bail!("{name} did not answer on {}", socket.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(&self.socket).await?)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// containerd is measured only where it is installed.
pub fn containerd_installed() -> bool {
    Command::new("containerd").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}
