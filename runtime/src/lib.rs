//! Process isolation for Berth: the built-in OCI runtime, the per-container monitor and runtime handlers.
//!
//! Speaks the OCI runtime-spec at its edge (a bundle in, a monitored process out) and knows nothing of the CRI.
//!
//! # How the pieces fit
//!
//! ```text
//! berth serve (tokio)            berth-monitor (one per container,     berth-runtime create | runc create
//!   Handler::create ──fork+exec──▶  own session, subreaper)  ──exec──▶    clones init, waits on exec.fifo,
//!   ◀── "ok <pid>" on a pipe ────   holds stdio / pty, logs,              exits; init is reparented to the
//!                                   reaps, writes `status`                monitor
//!   Handler::start ── in-process for the built-in runtime (opens exec.fifo), `runc start` otherwise
//! ```
//!
//! * [`handler`]: what the daemon calls. [`handler::OciHandler`] runs one runtime binary (the built-in
//!   `berth-runtime`, or `runc`/`crun` by path) under [`monitor`]. The daemon keeps a map from RuntimeClass handler
//!   name to [`handler::HandlerConfig`]; the built-in one is the default.
//! * [`monitor`]: the `berth-monitor` program and its client side ([`monitor::client::MonitorClient`]), the CRI log
//!   format ([`monitor::log`]), the socket protocol ([`monitor::protocol`]) and the status file
//!   ([`monitor::status`]).
//! * [`container`], [`exec`]: the built-in runtime's lifecycle (create/start/state/kill/delete, exec); they must run
//!   in a fresh single-threaded process, which is why the daemon reaches them through the `berth-runtime` binary
//!   ([`cli`], a runc-compatible command line).
//! * One module per kernel concern: [`namespaces`], [`rootfs`] and [`mounts`], [`cgroups`] (v1, v2 and the
//!   hybrid layout), [`capabilities`], [`process`] (user, rlimits, oom_score_adj, exec), [`seccomp`] (libseccomp),
//!   [`hooks`], [`tty`]. Errors: one enum per area, aggregated in [`Error`].
//!
//! # Using it from the daemon
//!
//! Every [`handler::Handler`] method blocks: call it inside `tokio::task::spawn_blocking`. Nothing in this crate
//! forks the calling process without an immediate exec (`std::process::Command` only).
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use berth_runtime::handler::{ContainerSpec, ExecRequest, Handler, HandlerConfig, OciHandler, Phase};
//!
//! # fn main() -> berth_runtime::Result<()> {
//! // Binaries installed next to `berth`; state under /run/berth (containers/<id>/ and runtime/<id>/).
//! let builtin = OciHandler::new(HandlerConfig::builtin(Path::new("/usr/local/bin"), Path::new("/run/berth")));
//! let runc = OciHandler::new(HandlerConfig::external(
//!     "runc", Path::new("/usr/sbin/runc"), Path::new("/usr/local/bin/berth-monitor"), Path::new("/run/berth"),
//! ));
//! let h: &dyn Handler = &builtin;
//!
//! // CreateContainer: the cri crate wrote <bundle>/config.json (oci-spec builders) and the rootfs.
//! let created = h.create(&ContainerSpec {
//!     id: "c1".into(),
//!     bundle: "/run/berth/bundles/c1".into(),
//!     log_path: "/var/log/pods/ns_pod_uid/app/0.log".into(),
//!     stdin: false, stdin_once: false, tty: false,
//! })?;
//! h.start("c1")?;                                   // StartContainer
//! let st = h.state("c1")?;                          // ContainerStatus: phase, pid, times, exit code, OOM
//! assert!(matches!(st.phase, Phase::Running | Phase::Stopped));
//!
//! // ExecSync
//! let mut p = oci_spec::runtime::Process::default();
//! p.set_args(Some(vec!["cat".into(), "/etc/hostname".into()]));
//! let out = h.exec_sync("c1", &ExecRequest { process: p, stdin: None, timeout: Some(Duration::from_secs(5)) })?;
//! println!("exit {} stdout {:?}", out.exit_code, out.stdout);
//!
//! // StopContainer: SIGTERM, wait for the grace period, then SIGKILL.
//! h.kill("c1", libc::SIGTERM, false)?;
//! if h.wait("c1", Some(Duration::from_secs(10))).is_err() {
//!     h.kill("c1", libc::SIGKILL, true)?;
//!     h.wait("c1", None)?;
//! }
//! h.delete("c1", false)?;                           // RemoveContainer (unknown ids succeed)
//! # let _ = (created, runc);
//! # Ok(()) }
//! ```
//!
//! Other calls: [`handler::Handler::exec_spawn`] (streaming exec: the runtime's `exec` child with piped stdio or a
//! pty master), [`handler::Handler::monitor`] (attach: [`monitor::client::MonitorClient::attach`],
//! `write_stdin`, `close_stdin`, `resize`, `reopen_log` for ReopenContainerLog),
//! [`handler::Handler::update_resources`] (UpdateContainerResources), [`handler::Handler::stats`]
//! (ContainerStats and cAdvisor-style metrics: cpu, memory, swap, limits, processes, PSI when the kernel has it;
//! see [`cgroups::Stats`]), [`handler::Handler::list`] (recovery after a
//! restart: everything is read back from `<state_root>/containers/<id>/`).
//!
//! Pods without a pause container: the `berth-pinns` binary ([`pinns`]) creates a pod's network, IPC and UTS
//! namespaces (hostname set, `lo` up, sysctls applied) and, for a pod-shared PID namespace, a tiny init; they are
//! pinned as bind mounts under a directory (e.g. `/run/berth/pods/<id>/ns/`). Give the network one to CNI and list
//! them by path in each container's `linux.namespaces`; [`pinns::unpin`] on RemovePodSandbox.
//!
//! # State on disk
//!
//! `<state_root>/containers/<id>/`: `status` (monitor; pid, exit code, signal, finish time, OOM), `started`
//! (start time), `cgroup` (the cgroup path), `attach.sock`, `pid`, `runtime.log` (the runtime's own errors). The
//! built-in runtime's own state is under `--root` (`<state_root>/runtime/<id>/state.json`, `exec.fifo`), as runc's.
//!
//! # Known gaps
//!
//! Cgroup v2 code paths (limits, BPF device filter) are exercised here only through the hybrid host's unified
//! hierarchy, which has no controllers: limits on a pure v2 host are untested. `--systemd-cgroup` maps
//! `slice:prefix:name` onto cgroupfs without talking to systemd. Time namespaces, AppArmor profiles, SELinux
//! labels, intelRdt, personality, memory policy, scheduler and I/O priority are refused by name (AppArmor and
//! SELinux only when the host has them), as is `linux.seccomp.listenerPath` (seccomp notify). A single monitor maps its whole binary text (fault-around), ~0.55 MiB PSS alone; shared across containers the
//! steady state is ~0.21 MiB PSS each.

pub mod capabilities;
pub mod cgroups;
pub mod cli;
pub mod container;
pub mod error;
pub mod exec;
pub mod handler;
pub mod hooks;
pub mod monitor;
pub mod mounts;
pub mod namespaces;
pub mod pinns;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod state;
pub mod tty;
pub mod util;

pub use error::{Error, Result};
