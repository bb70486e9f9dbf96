//! Runtime handlers: what the daemon calls to run a container from a bundle.
//!
//! A [`Handler`] runs bundles with one OCI runtime binary under a per-container [`monitor`](crate::monitor). The
//! built-in runtime (`berth-runtime`) and external ones (`runc`, `crun`) share the same monitor and command line;
//! the built-in handler does `start`, `kill`, `delete` and `update` in-process (no fork, safe from tokio threads).
//! See the crate documentation for the calling sequence.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxResources, Process};

use crate::cgroups::{self, Cgroup, Layout, Stats};
use crate::error::{Error, ExternalError, MonitorError, Result, StateError};
use crate::monitor::MonitorArgs;
use crate::monitor::client::MonitorClient;
use crate::monitor::status::ExitStatus;
use crate::{container, state, util};

/// Where a handler keeps things and which binaries it runs. Every path is configurable so tests run side by side.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// Handler name as RuntimeClass handlers name it (`""`/`"berth"` for the built-in one, `"runc"`, `"crun"`).
    pub name: String,
    /// Per-container monitor directories: `<state_root>/<id>/` (status, attach.sock, pid, cgroup, started).
    pub state_root: PathBuf,
    /// The `berth-monitor` binary.
    pub monitor: PathBuf,
    /// The runtime binary: `berth-runtime`, `/usr/sbin/runc`, `/usr/bin/crun`.
    pub runtime: PathBuf,
    /// The runtime's own `--root`.
    pub runtime_root: PathBuf,
    /// True for `berth-runtime`: lifecycle calls other than create/exec are done in-process.
    pub builtin: bool,
    pub systemd_cgroup: bool,
}

impl HandlerConfig {
    /// The built-in runtime, with binaries found next to the current executable (or in `bin_dir`).
    pub fn builtin(bin_dir: &Path, state_root: &Path) -> Self {
        HandlerConfig {
            name: "berth".into(),
            state_root: state_root.join("containers"),
            monitor: bin_dir.join("berth-monitor"),
            runtime: bin_dir.join("berth-runtime"),
            runtime_root: state_root.join("runtime"),
            builtin: true,
            systemd_cgroup: false,
        }
    }

    /// An external runtime binary (runc, crun) under the same monitor.
    pub fn external(name: &str, binary: &Path, monitor: &Path, state_root: &Path) -> Self {
        HandlerConfig {
            name: name.into(),
            state_root: state_root.join("containers"),
            monitor: monitor.to_path_buf(),
            runtime: binary.to_path_buf(),
            runtime_root: state_root.join(name),
            builtin: false,
            systemd_cgroup: false,
        }
    }
}

/// What the daemon asks for when creating a container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub id: String,
    /// Bundle directory: `config.json` and the rootfs it names.
    pub bundle: PathBuf,
    /// Absolute path of the CRI log file; empty to discard output.
    pub log_path: PathBuf,
    /// Keep a stdin pipe the daemon can write through attach.
    pub stdin: bool,
    /// Close the container's stdin when the first attach that wrote to it ends.
    pub stdin_once: bool,
    /// Must match `process.terminal` in the bundle.
    pub tty: bool,
}

/// Result of create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub pid: i32,
    /// The monitor's directory (attach.sock lives there).
    pub state_dir: PathBuf,
}

/// Lifecycle phase as the CRI sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Created,
    Running,
    Stopped,
}

/// Everything the CRI's ContainerStatus needs from the runtime. Times are nanoseconds since the epoch, 0 if unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub id: String,
    pub phase: Phase,
    pub pid: i32,
    pub created_at: i128,
    pub started_at: i128,
    pub finished_at: i128,
    /// Exit code; 128+signal when killed by a signal; -1 when the exit was not observed (monitor lost).
    pub exit_code: i32,
    pub exit_signal: i32,
    pub oom_killed: bool,
}

/// An exec request (CRI ExecSync).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub process: Process,
    /// Bytes for the process's stdin (closed after), or none.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

/// Result of an exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

/// A streaming exec: the runtime's `exec` process with piped stdio, or a pty master when `tty` was asked.
pub struct ExecProcess {
    /// Wait on it for the exit code (the runtime exits with the process's code; 128+signal when killed).
    pub child: Child,
    /// Read/write the terminal here when tty was requested (stdin/stdout of `child` are then unused).
    pub pty_master: Option<OwnedFd>,
}

/// The operations the daemon needs. All are blocking; call them from `spawn_blocking`.
pub trait Handler: Send + Sync {
    /// The handler's name.
    fn name(&self) -> &str;
    /// Start a monitor which runs `create`; returns once init waits for `start`.
    fn create(&self, spec: &ContainerSpec) -> Result<Created>;
    /// Let init exec the user's program.
    fn start(&self, id: &str) -> Result<()>;
    /// Signal init, or with `all` every process of the container.
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    /// Current state; survives daemon restarts (read from the state directory).
    fn state(&self, id: &str) -> Result<State>;
    /// Wait until the container stopped (or `timeout`), then return its state.
    fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<State>;
    /// Remove the container; a running one only with `force` (killed first). Unknown ids succeed.
    fn delete(&self, id: &str, force: bool) -> Result<()>;
    /// Run a process in the container to completion and capture its output (CRI ExecSync).
    fn exec_sync(&self, id: &str, req: &ExecRequest) -> Result<ExecOutput>;
    /// Start a process in the container and hand back its stdio (CRI Exec streaming).
    fn exec_spawn(&self, id: &str, process: &Process, tty: bool) -> Result<ExecProcess>;
    /// Change cgroup limits of a running container.
    fn update_resources(&self, id: &str, res: &LinuxResources) -> Result<()>;
    /// CPU and memory usage from the container's cgroup.
    fn stats(&self, id: &str) -> Result<Stats>;
    /// Connect to the monitor for attach, resize and reopen-log.
    fn monitor(&self, id: &str) -> Result<MonitorClient>;
    /// Ids of the containers this handler has state for.
    fn list(&self) -> Vec<String>;
}

/// The one implementation: a runtime binary under `berth-monitor`.
#[derive(Debug, Clone)]
pub struct OciHandler {
    pub cfg: HandlerConfig,
}

const STARTED: &str = "started";
const CGROUP: &str = "cgroup";
const STATUS: &str = "status";

impl OciHandler {
    pub fn new(cfg: HandlerConfig) -> Self {
        OciHandler { cfg }
    }

    fn dir(&self, id: &str) -> Result<PathBuf> {
        state::dir(&self.cfg.state_root, id)
    }

    fn existing_dir(&self, id: &str) -> Result<PathBuf> {
        let d = self.dir(id)?;
        if d.join(CGROUP).exists() {
            Ok(d)
        } else {
            Err(StateError::NotFound(id.into()).into())
        }
    }

    fn runtime_cmd(&self) -> Command {
        let mut c = Command::new(&self.cfg.runtime);
        c.arg("--root").arg(&self.cfg.runtime_root);
        if self.cfg.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        c
    }

    /// Run the runtime's CLI to completion.
    fn runtime(&self, args: &[&str]) -> Result<Vec<u8>> {
        let out = self
            .runtime_cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ExternalError::Spawn {
                binary: self.cfg.runtime.clone(),
                args: args.join(" "),
                source,
            })?;
        if !out.status.success() {
            return Err(ExternalError::Failed {
                binary: self.cfg.runtime.clone(),
                args: args.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }
            .into());
        }
        Ok(out.stdout)
    }

    fn cgroup(&self, id: &str) -> Result<Cgroup> {
        let rel = fs::read_to_string(self.existing_dir(id)?.join(CGROUP)).map_err(|source| {
            StateError::Io {
                what: "read",
                path: PathBuf::from(CGROUP),
                source,
            }
        })?;
        Ok(Cgroup::open(&Layout::detect()?, Path::new(rel.trim())))
    }

    fn status(&self, id: &str) -> Result<ExitStatus> {
        let p = self.existing_dir(id)?.join(STATUS);
        Ok(ExitStatus::read(&p).unwrap_or_default())
    }

    fn process_file(&self, id: &str, process: &Process) -> Result<PathBuf> {
        let dir = self.existing_dir(id)?;
        let path = dir.join(format!("exec-{}.json", util::now_nanos()));
        let data = serde_json::to_vec(process).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        fs::write(&path, data).map_err(|source| StateError::Io {
            what: "write",
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

impl Handler for OciHandler {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn create(&self, spec: &ContainerSpec) -> Result<Created> {
        let dir = self.dir(&spec.id)?;
        if dir.exists() {
            return Err(StateError::Exists(spec.id.clone()).into());
        }
        let oci = container::load_spec(&spec.bundle)?;
        let cg_path = oci.linux().as_ref().and_then(|l| l.cgroups_path().clone());
        let rel = cgroups::resolve_path(cg_path.as_deref(), &spec.id, self.cfg.systemd_cgroup);
        let layout = Layout::detect()?;
        let oom_file = Cgroup::open(&layout, &rel).memory_events_file();
        fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            what: "mkdir",
            path: dir.clone(),
            source,
        })?;
        fs::write(dir.join(CGROUP), rel.display().to_string()).map_err(|source| {
            StateError::Io {
                what: "write",
                path: dir.join(CGROUP),
                source,
            }
        })?;
        let args = MonitorArgs {
            id: spec.id.clone(),
            state_dir: dir.clone(),
            bundle: spec.bundle.clone(),
            log_path: spec.log_path.clone(),
            runtime: self.cfg.runtime.clone(),
            runtime_args: {
                let mut v = vec![
                    "--root".to_string(),
                    self.cfg.runtime_root.display().to_string(),
                ];
                if self.cfg.systemd_cgroup {
                    v.push("--systemd-cgroup".into());
                }
                v
            },
            stdin: spec.stdin,
            stdin_once: spec.stdin_once,
            tty: spec.tty,
            oom_file,
        };
        let result = (|| -> Result<Created> {
            let mut child = Command::new(&self.cfg.monitor)
                .args(args.to_argv())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|source| MonitorError::Io {
                    what: format!("spawn {}", self.cfg.monitor.display()),
                    source,
                })?;
            let mut line = String::new();
            if let Some(mut out) = child.stdout.take() {
                out.read_to_string(&mut line)
                    .map_err(|source| MonitorError::Io {
                        what: "read report".into(),
                        source,
                    })?;
            }
            let _ = child.wait();
            let line = line.trim();
            if let Some(pid) = line.strip_prefix("ok ") {
                let pid = pid
                    .parse()
                    .map_err(|_| MonitorError::Protocol(format!("bad report {line:?}")))?;
                return Ok(Created {
                    pid,
                    state_dir: dir.clone(),
                });
            }
            let msg = line.strip_prefix("error ").unwrap_or(line);
            Err(MonitorError::Failed(if msg.is_empty() {
                "monitor exited without a report".into()
            } else {
                msg.into()
            })
            .into())
        })();
        if result.is_err() {
            let _ = if self.cfg.builtin {
                container::delete(&self.cfg.runtime_root, &spec.id, true).map(|_| Vec::new())
            } else {
                self.runtime(&["delete", "--force", &spec.id])
            };
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    fn start(&self, id: &str) -> Result<()> {
        let dir = self.existing_dir(id)?;
        if self.cfg.builtin {
            container::start(&self.cfg.runtime_root, id)?;
        } else {
            self.runtime(&["start", id])?;
        }
        util::write_atomic(&dir.join(STARTED), util::now_nanos().to_string().as_bytes()).map_err(
            |source| StateError::Io {
                what: "write",
                path: dir.join(STARTED),
                source,
            },
        )?;
        Ok(())
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        self.existing_dir(id)?;
        if self.cfg.builtin {
            return container::kill(&self.cfg.runtime_root, id, signal, all);
        }
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.runtime(&args).map(|_| ())
    }

    fn state(&self, id: &str) -> Result<State> {
        let dir = self.existing_dir(id)?;
        let mut st = self.status(id)?;
        let created_at = fs::metadata(dir.join(CGROUP))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let started_at: i128 = fs::read_to_string(dir.join(STARTED))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let alive = st.pid > 0
            && util::pidfd_for(st.pid, st.pid_start)
                .ok()
                .flatten()
                .is_some();
        // Dead but not yet recorded while the monitor runs: the exit is on its way, report the phase it had.
        let mut lost = !st.exited && !alive && !st.monitor_alive();
        if lost {
            // The monitor may have written the exit and quit between our read and the liveness check.
            st = self.status(id)?;
            lost = !st.exited;
        }
        let phase = if st.exited || lost {
            Phase::Stopped
        } else if started_at > 0 {
            Phase::Running
        } else {
            Phase::Created
        };
        Ok(State {
            id: id.into(),
            phase,
            pid: st.pid,
            created_at,
            started_at,
            finished_at: st.finished_at_nanos,
            exit_code: if lost { -1 } else { st.exit_code },
            exit_signal: st.exit_signal,
            oom_killed: st.oom_killed,
        })
    }

    fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<State> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let left_ms = |d: Option<Instant>| -> i32 {
            d.map(|d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32
            })
            .unwrap_or(-1)
        };
        // Block on a pidfd of init until it exits (no polling interval to pay)...
        let st = self.status(id)?;
        if !st.exited
            && st.pid > 0
            && let Ok(Some(fd)) = util::pidfd_for(st.pid, st.pid_start)
            && !util::pidfd_wait(&fd, left_ms(deadline))
        {
            return Err(Error::Timeout(format!("container {id} still running")));
        }
        // ...then give the monitor the moment it needs to write the exit down.
        loop {
            let s = self.state(id)?;
            if s.phase == Phase::Stopped {
                return Ok(s);
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err(Error::Timeout(format!("container {id} still running")));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn delete(&self, id: &str, force: bool) -> Result<()> {
        let dir = match self.existing_dir(id) {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let s = self.state(id)?;
        if s.phase == Phase::Running && !force {
            return Err(StateError::WrongStatus {
                id: id.into(),
                status: "running".into(),
                action: "delete",
                need: "stopped (or force)",
            }
            .into());
        }
        if self.cfg.builtin {
            container::delete(&self.cfg.runtime_root, id, true)?;
        } else {
            self.runtime(&["delete", "--force", id])?;
        }
        // Let the monitor record the exit before its directory goes.
        let _ = self.wait(id, Some(Duration::from_secs(2)));
        fs::remove_dir_all(&dir).map_err(|source| StateError::Io {
            what: "remove",
            path: dir,
            source,
        })?;
        Ok(())
    }

    fn exec_sync(&self, id: &str, req: &ExecRequest) -> Result<ExecOutput> {
        let pf = self.process_file(id, &req.process)?;
        let pid_file = pf.with_extension("pid");
        let mut cmd = self.runtime_cmd();
        cmd.arg("exec")
            .arg("--process")
            .arg(&pf)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id);
        cmd.stdin(if req.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let spawn_err = |source| ExternalError::Spawn {
            binary: self.cfg.runtime.clone(),
            args: "exec".into(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let (Some(data), Some(mut w)) = (req.stdin.clone(), child.stdin.take()) {
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = w.write_all(&data);
            });
        }
        let reader = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut v);
                }
                v
            })
        };
        let out_t = reader(
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let err_t = reader(
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let deadline = req.timeout.map(|t| Instant::now() + t);
        let mut timed_out = false;
        let status = loop {
            if let Some(st) = child.try_wait().map_err(spawn_err)? {
                break Some(st);
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                timed_out = true;
                // Kill the process in the container first (its pid is in the pid file), then the runtime.
                if let Some(pid) = fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    && let Ok(Some(fd)) =
                        util::proc_start_time(pid).and_then(|t| util::pidfd_for(pid, t))
                {
                    let _ = util::pidfd_send_signal(&fd, libc::SIGKILL);
                    // Wait for it to die before its runtime parent does: it then dies a zombie of that parent and
                    // is released with it, so a caller that looks right after the timeout finds it gone.
                    let mut pfd = [libc::pollfd {
                        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
                        events: libc::POLLIN,
                        revents: 0,
                    }];
                    // SAFETY: poll on one valid pidfd we own, with a bounded timeout.
                    unsafe { libc::poll(pfd.as_mut_ptr(), 1, 2000) };
                }
                let _ = child.kill();
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let stdout = out_t.join().unwrap_or_default();
        let stderr = err_t.join().unwrap_or_default();
        let _ = fs::remove_file(&pf);
        // The runtime writes the pid file once the process runs: without it, the runtime itself failed (container
        // gone, bad process spec) and its exit code is not the process's.
        let started = fs::metadata(&pid_file)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        let _ = fs::remove_file(&pid_file);
        use std::os::unix::process::ExitStatusExt;
        let exit_code = status
            .map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)))
            .unwrap_or(-1);
        if !started && !timed_out && exit_code != 0 {
            return Err(ExternalError::Failed {
                binary: self.cfg.runtime.clone(),
                args: format!("exec {id}"),
                status: format!("exit {exit_code}"),
                stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            }
            .into());
        }
        Ok(ExecOutput {
            exit_code,
            stdout,
            stderr,
            timed_out,
        })
    }

    fn exec_spawn(&self, id: &str, process: &Process, tty: bool) -> Result<ExecProcess> {
        let mut p = process.clone();
        p.set_terminal(Some(tty));
        let pf = self.process_file(id, &p)?;
        let mut cmd = self.runtime_cmd();
        cmd.arg("exec").arg("--process").arg(&pf);
        let spawn_err = |source| ExternalError::Spawn {
            binary: self.cfg.runtime.clone(),
            args: "exec".into(),
            source,
        };
        if !tty {
            cmd.arg(id)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let child = cmd.spawn().map_err(spawn_err)?;
            return Ok(ExecProcess {
                child,
                pty_master: None,
            });
        }
        let sock = pf.with_extension("sock");
        let listener = UnixListener::bind(&sock).map_err(|source| MonitorError::Io {
            what: "bind console socket".into(),
            source,
        })?;
        cmd.arg("--console-socket")
            .arg(&sock)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(spawn_err)?;
        listener.set_nonblocking(true).ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        let master = loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).ok();
                    break crate::tty::recv_fd(s.as_raw_fd())?;
                }
                Err(_)
                    if Instant::now() < deadline && child.try_wait().ok().flatten().is_none() =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = fs::remove_file(&sock);
                    return Err(
                        MonitorError::Failed(format!("exec sent no pty: {}", err.trim())).into(),
                    );
                }
            }
        };
        let _ = fs::remove_file(&sock);
        Ok(ExecProcess {
            child,
            pty_master: Some(master),
        })
    }

    fn update_resources(&self, id: &str, res: &LinuxResources) -> Result<()> {
        if self.cfg.builtin {
            return Ok(self.cgroup(id)?.apply(res)?);
        }
        let dir = self.existing_dir(id)?;
        let f = dir.join("resources.json");
        let data = serde_json::to_vec(res).map_err(|source| StateError::Corrupt {
            path: f.clone(),
            source,
        })?;
        fs::write(&f, data).map_err(|source| StateError::Io {
            what: "write",
            path: f.clone(),
            source,
        })?;
        let r = self
            .runtime(&["update", "--resources", &f.display().to_string(), id])
            .map(|_| ());
        let _ = fs::remove_file(&f);
        r
    }

    fn stats(&self, id: &str) -> Result<Stats> {
        Ok(self.cgroup(id)?.stats())
    }

    fn monitor(&self, id: &str) -> Result<MonitorClient> {
        Ok(MonitorClient::connect(
            &self.existing_dir(id)?.join("attach.sock"),
        )?)
    }

    fn list(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.cfg.state_root) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| e.path().join(CGROUP).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }
}
