//! Shared test harness: busybox bundles in temp dirs, handlers on temp state roots, cleanup on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_runtime::handler::{ContainerSpec, Handler, HandlerConfig, OciHandler, Phase, State};
use berth_runtime::monitor::log::{Stream, decode};
use serde_json::{Value, json};

pub const RUNTIME: &str = env!("CARGO_BIN_EXE_berth-runtime");
pub const MONITOR: &str = env!("CARGO_BIN_EXE_berth-monitor");
pub const RUNC: &str = "/usr/sbin/runc";

const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "hostname", "id", "mount", "sleep", "true", "false", "grep", "head",
    "tr", "dd", "touch", "mkdir", "readlink", "wc", "seq", "printf", "stat", "ps", "env", "test",
    "[", "yes",
];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique name for this test run.
pub fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A bundle: busybox rootfs and a config.json built from oci-spec's defaults.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
    pub id: String,
}

impl Bundle {
    pub fn new(name: &str, args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a))
                .expect("symlink applet");
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
        let id = unique(name);
        let mut config = serde_json::to_value(oci_spec::runtime::Spec::default()).expect("spec");
        config["process"]["args"] = json!(args);
        config["process"]["noNewPrivileges"] = json!(false);
        config["hostname"] = json!(format!("h-{name}"));
        config["linux"]["cgroupsPath"] = json!(format!("/berth-test/{id}"));
        config["root"]["path"] = json!("rootfs");
        Bundle { dir, config, id }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("json"),
        )
        .expect("write config.json");
    }
}

/// A handler on a temp state root; deletes what it created on drop, even after a failed assertion.
pub struct Env {
    pub root: tempfile::TempDir,
    pub handler: OciHandler,
    pub ids: std::cell::RefCell<Vec<String>>,
}

impl Env {
    pub fn builtin() -> Env {
        let root = tempfile::Builder::new()
            .prefix("berth-rt-state-")
            .tempdir()
            .expect("tempdir");
        let bin = Path::new(RUNTIME).parent().expect("bin dir").to_path_buf();
        let cfg = HandlerConfig::builtin(&bin, root.path());
        Env {
            root,
            handler: OciHandler::new(cfg),
            ids: Default::default(),
        }
    }

    pub fn runc() -> Env {
        let root = tempfile::Builder::new()
            .prefix("berth-rt-state-")
            .tempdir()
            .expect("tempdir");
        let cfg = HandlerConfig::external("runc", Path::new(RUNC), Path::new(MONITOR), root.path());
        Env {
            root,
            handler: OciHandler::new(cfg),
            ids: Default::default(),
        }
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.root.path().join("logs").join(format!("{id}.log"))
    }

    /// Create a container from the bundle (not started).
    pub fn create(&self, b: &Bundle) -> berth_runtime::Result<berth_runtime::handler::Created> {
        self.create_with(b, false, false, false)
    }

    /// Create with stdin / stdin_once / tty.
    pub fn create_with(
        &self,
        b: &Bundle,
        stdin: bool,
        stdin_once: bool,
        tty: bool,
    ) -> berth_runtime::Result<berth_runtime::handler::Created> {
        b.write();
        self.ids.borrow_mut().push(b.id.clone());
        self.handler.create(&ContainerSpec {
            id: b.id.clone(),
            bundle: b.path().to_path_buf(),
            log_path: self.log_path(&b.id),
            stdin,
            stdin_once,
            tty,
        })
    }

    /// The decoded stdout of the container's log.
    pub fn stdout(&self, id: &str) -> String {
        let log = std::fs::read(self.log_path(id)).unwrap_or_default();
        String::from_utf8_lossy(&decode(&log, Stream::Stdout)).into_owned()
    }

    /// Create, start, wait; returns (state, stdout, stderr).
    pub fn run(&self, b: &Bundle) -> (State, String, String) {
        self.create(b).expect("create");
        self.handler.start(&b.id).expect("start");
        let st = self
            .handler
            .wait(&b.id, Some(Duration::from_secs(20)))
            .expect("wait");
        assert_eq!(st.phase, Phase::Stopped);
        if st.exit_code == -1 {
            let d = self.handler.cfg.state_root.join(&b.id);
            eprintln!(
                "LOST EXIT: status {:?}",
                std::fs::read_to_string(d.join("status"))
            );
            eprintln!(
                "files {:?}",
                std::fs::read_dir(&d).map(|r| r
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .collect::<Vec<_>>())
            );
        }
        let log = std::fs::read(self.log_path(&b.id)).unwrap_or_default();
        (
            st,
            String::from_utf8_lossy(&decode(&log, Stream::Stdout)).into_owned(),
            String::from_utf8_lossy(&decode(&log, Stream::Stderr)).into_owned(),
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.handler.delete(id, true);
        }
        // The shared parent goes once no test uses it any more (rmdir fails while one does).
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in rd.filter_map(|e| e.ok()) {
                let _ = std::fs::remove_dir(h.path().join("berth-test"));
            }
        }
    }
}
