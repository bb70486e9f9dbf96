//! End-to-end harness: a real `berth serve` on a temporary root, state dir and socket, driven over its unix socket
//! by the CRI client, as a kubelet would.
//!
//! Every daemon gets its own directory tree, so tests run in parallel; dropping a [`Daemon`] stops it and removes
//! the tree whether the test passed or panicked.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod kubelet;

use anyhow::{Context, Result, bail};
use berth_cri::client::Client;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The `berth` binary under test: `$BERTH_BIN`, else the one cargo built beside this test executable.
pub fn berth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_BIN") {
        return p.into();
    }
    // target/<profile>/deps/<test> -> target/<profile>/berth
    let exe = std::env::current_exe().expect("current test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berth"))
        .expect("test executable lives in target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --bins` (same profile as the tests) or set BERTH_BIN",
        bin.display()
    );
    bin
}

/// A config file for a daemon rooted in `dir`, with `extra` TOML appended (top-level keys first, then tables).
///
/// Each daemon gets a default pod network of its own (bridge name and /24 unique to it, no masquerade), so tests
/// run in parallel and no pod traffic is ever NATed off the machine.
pub fn config_text(dir: &Path, extra: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!(
        "root = \"{root}\"\nstate = \"{state}\"\nsocket = \"{socket}\"\nlog_level = \"debug\"\n{extra}\n\n[cni]\nconf_dir = \"{cni}\"\n\n[cni.default_network]\nbridge = \"bt{pid:x}{n:x}\"\nsubnet = \"10.{o2}.{o3}.0/24\"\nip_masq = false\n",
        root = dir.join("root").display(),
        state = dir.join("s").display(),
        socket = dir.join("berth.sock").display(),
        cni = dir.join("net.d").display(),
        o2 = 100 + pid % 100,
        o3 = n % 250,
    )
}

/// A running `berth serve` of its own.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts a daemon on default settings (its own root, state and socket).
    pub async fn start() -> Result<Daemon> {
        Self::start_with("").await
    }

    /// Starts a daemon whose config file has `extra` top-level TOML keys added.
    pub async fn start_with(extra: &str) -> Result<Daemon> {
        Self::start_full(extra, None).await
    }

    /// Starts a daemon whose CNI conf dir already holds `conflist` (as `10-test.conflist`), so Berth uses that
    /// network instead of writing its default.
    pub async fn start_with_network(conflist: &str) -> Result<Daemon> {
        Self::start_full("", Some(conflist)).await
    }

    async fn start_full(extra: &str, conflist: Option<&str>) -> Result<Daemon> {
        // Short paths: unix socket paths under the state dir (a monitor's attach.sock beside a 64-digit id) must fit
        // in 107 bytes.
        let dir = tempfile::Builder::new().prefix("b-").tempdir_in("/tmp")?;
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config_text(dir.path(), extra))?;
        if let Some(conflist) = conflist {
            std::fs::create_dir_all(dir.path().join("net.d"))?;
            std::fs::write(dir.path().join("net.d/10-test.conflist"), conflist)?;
        }
        let mut daemon = Daemon {
            child: None,
            socket: dir.path().join("berth.sock"),
            config_path,
            dir,
        };
        daemon.spawn().await?;
        Ok(daemon)
    }

    /// Starts the daemon process again on the same directories (after [`Daemon::terminate`] or [`Daemon::kill`]).
    pub async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berth.log"))?;
        let child = Command::new(berth_bin())
            .arg("--config")
            .arg(&self.config_path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning berth serve")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20)).await
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "berth serve exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            if let Ok(mut c) = Client::connect(&self.socket).await
                && c.runtime
                    .version(berth_cri::api::VersionRequest::default())
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "berth serve did not answer within {timeout:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(&self.socket).await?)
    }

    /// The daemon's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berth.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, and the exit status once the daemon has shut down.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.signal_and_wait(Signal::SIGTERM, Duration::from_secs(20))
    }

    /// SIGKILL: the crash the daemon must survive.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))
    }

    fn signal_and_wait(&mut self, signal: Signal, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("daemon is not running")?;
        kill(Pid::from_raw(child.id() as i32), signal)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "berth serve did not exit within {timeout:?} of {signal}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Daemon {
    /// Deletes this daemon's default-network bridge: links outlive the daemon that made them.
    fn remove_bridge(&self) {
        let config = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        if let Some(name) = config
            .lines()
            .find_map(|l| l.strip_prefix("bridge = \""))
            .map(|v| v.trim_end_matches('"'))
        {
            let _ = Command::new("ip")
                .args(["link", "del", name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            berth_cri::client::remove_all_pods_blocking(&self.socket);
            let _ = self.terminate();
        }
        berth_testkit::cleanup::detach_mounts_under(self.dir.path());
        self.remove_bridge();
        if std::thread::panicking() {
            eprintln!(
                "--- berth log ({}) ---\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
    }
}

/// Runs `berth ARGS` to completion: (exit success, stdout, stderr).
pub fn berth(args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(berth_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A real registry on a loopback port holding `library/busybox:latest`, built from the host's busybox-static.
pub struct BusyboxRegistry {
    pub registry: berth_testkit::Registry,
    pub image: berth_testkit::Image,
    /// The manifest digest the registry stores the image under.
    pub digest: String,
    /// `127.0.0.1:PORT/library/busybox:latest`
    pub reference: String,
}

impl BusyboxRegistry {
    pub fn start() -> Result<BusyboxRegistry> {
        let registry = berth_testkit::Registry::start()
            .map_err(|e| anyhow::anyhow!("starting registry: {e}"))?;
        let image = berth_testkit::busybox();
        let digest = berth_testkit::Pusher::new(&registry)
            .push_image("library/busybox", "latest", &image)
            .map_err(|e| anyhow::anyhow!("pushing busybox: {e}"))?;
        let reference = format!("{}/library/busybox:latest", registry.host());
        Ok(BusyboxRegistry {
            registry,
            image,
            digest,
            reference,
        })
    }
}
