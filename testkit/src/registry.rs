//! A real `docker-registry` process on a free loopback port.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;

const BINARY: &str = "/usr/bin/docker-registry";

/// A running registry; killed and its storage removed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    credentials: Option<(String, String)>,
    tls: bool,
    data: PathBuf,
}

impl Registry {
    /// Starts an anonymous registry (no auth), plain http on 127.0.0.1.
    pub fn start() -> Result<Registry> {
        Self::spawn(None, None)
    }

    /// Starts a second registry serving `plain`'s storage over https, with a fresh self-signed certificate for
    /// 127.0.0.1 (needs `openssl`). Push through `plain` (the pusher speaks http only), pull through this one.
    pub fn start_tls_front(plain: &Registry) -> Result<Registry> {
        Self::spawn(None, Some(plain.storage_dir()))
    }

    /// Starts a registry that demands HTTP basic auth with these credentials (bcrypt htpasswd file).
    pub fn start_with_htpasswd(user: &str, pass: &str) -> Result<Registry> {
        Self::spawn(Some((user.to_string(), pass.to_string())), None)
    }

    fn spawn(
        credentials: Option<(String, String)>,
        tls_storage: Option<PathBuf>,
    ) -> Result<Registry> {
        if !Path::new(BINARY).exists() {
            return Err(format!("{BINARY} is missing: apt-get install docker-registry").into());
        }
        // The port can be stolen between probing and the registry's bind; retry a few times.
        let mut last_err: Option<crate::Error> = None;
        for _ in 0..5 {
            match Self::try_spawn(credentials.clone(), tls_storage.clone()) {
                Ok(r) => return Ok(r),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| "registry did not start".into()))
    }

    fn try_spawn(
        credentials: Option<(String, String)>,
        tls_storage: Option<PathBuf>,
    ) -> Result<Registry> {
        let tls = tls_storage.is_some();
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data = tls_storage.unwrap_or_else(|| dir.path().join("data"));
        std::fs::create_dir_all(&data)?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  redirect:\n    disable: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        );
        if let Some((user, pass)) = &credentials {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()?;
            if !out.status.success() {
                return Err(
                    format!("htpasswd failed (apt-get install apache2-utils): {out:?}").into(),
                );
            }
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, &out.stdout)?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                path.display()
            ));
        }
        if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let out = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "2",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()?;
            if !out.status.success() {
                return Err(
                    format!("openssl failed: {}", String::from_utf8_lossy(&out.stderr)).into(),
                );
            }
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::File::create(&config_path)?.write_all(config.as_bytes())?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut reg = Registry {
            child,
            port,
            dir,
            credentials,
            tls,
            data,
        };
        reg.wait_ready()?;
        Ok(reg)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(1))
            .build();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                return Err(format!("docker-registry exited with {status}: {log}").into());
            }
            if self.tls {
                // The pusher's ureq has no TLS: a TCP connect is enough to know the registry listens.
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err("tls registry never listened".into());
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match agent.get(&format!("{}/v2/", self.url())).call() {
                Ok(_) | Err(ureq::Error::Status(401, _)) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("registry never answered /v2/: {e}").into()),
            }
        }
    }

    /// `127.0.0.1:PORT`, the registry host as it appears in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (`https://` for [`Registry::start_tls`]).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.host()
        )
    }

    /// PEM of the self-signed certificate of a TLS registry.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("cert.pem"))
    }

    /// The credentials given to [`Registry::start_with_htpasswd`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's storage root (the `filesystem.rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.data.clone()
    }

    /// Path of a stored blob's bytes, `digest` as `sha256:<hex>`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// Flips bytes in the middle of a stored blob, keeping its size: the registry keeps serving it under the old
    /// digest, so a client must catch the mismatch itself.
    pub fn corrupt_blob(&self, digest: &str) -> Result<()> {
        let path = self.blob_path(digest);
        let mut bytes = std::fs::read(&path)?;
        if bytes.is_empty() {
            return Err("cannot corrupt an empty blob".into());
        }
        let mid = bytes.len() / 2;
        for b in bytes.iter_mut().skip(mid).take(16) {
            *b ^= 0xff;
        }
        std::fs::write(&path, bytes)?;
        Ok(())
    }

    /// Replaces a stored blob with `bytes` (any size), e.g. to serve a blob longer or shorter than its descriptor.
    pub fn replace_blob(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        std::fs::write(self.blob_path(digest), bytes)?;
        Ok(())
    }

    /// The registry's log so far (stderr + stdout), for failing tests.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
