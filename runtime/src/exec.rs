//! Exec: run one more process inside a running container, in its namespaces and cgroup, with the security settings
//! of its own process spec (user, capabilities, no_new_privileges, rlimits) and the container's seccomp filter.
//!
//! Like `create`, this must run in a single-threaded process (the `berth-runtime exec` command): it calls `setns`
//! on itself, which the kernel refuses for mount namespaces in multi-threaded processes, then forks.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};
use oci_spec::runtime::Process;

use crate::cgroups::{Cgroup, Layout};
use crate::error::{Result, SetupError, StateError, io, sys};
use crate::state::{ContainerState, Status};
use crate::{container, process, tty};

/// Options of `exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub root: PathBuf,
    pub id: String,
    pub process: Process,
    /// Return as soon as the process runs (its PID goes to `pid_file`) instead of waiting for its exit.
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master when `process.terminal` is true.
    pub console_socket: Option<PathBuf>,
    /// With `process.terminal` and no console socket: make the inherited stdin (a pty slave) the controlling tty.
    pub inherit_tty: bool,
}

/// Order in which namespaces are joined: user first (it grants the rights to join the rest), mount last.
const ORDER: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Run the process; returns its exit code (128+signal when killed), or 0 once started with `detach`.
pub fn exec(opts: &ExecOptions) -> Result<i32> {
    let st = ContainerState::load(&opts.root, &opts.id)?;
    let status = st.status(&opts.root);
    if status == Status::Stopped {
        return Err(StateError::WrongStatus {
            id: opts.id.clone(),
            status: status.to_string(),
            action: "exec",
            need: "running",
        }
        .into());
    }
    let spec = container::load_spec(&st.bundle)?;
    // Unset security fields come from the container's own process, as with runc: an exec without a capability list
    // must not run with the full root capabilities of the runtime.
    let mut opts = opts.clone();
    if let Some(cp) = spec.process() {
        if opts.process.capabilities().is_none() {
            opts.process.set_capabilities(cp.capabilities().clone());
        }
        if opts.process.no_new_privileges().is_none() {
            opts.process.set_no_new_privileges(cp.no_new_privileges());
        }
    }
    let opts = &opts;
    // Open every namespace first: once we joined the mount namespace, /proc is the container's.
    let mut ns: Vec<(File, CloneFlags)> = Vec::new();
    for (name, flag) in ORDER {
        if !st.namespaces.iter().any(|k| k == name) {
            continue;
        }
        let path = format!("/proc/{}/ns/{name}", st.pid);
        let f = File::open(&path).map_err(io(format!("open {path}")))?;
        let own = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map(|m| m.ino())
            .unwrap_or(0);
        if f.metadata().map(|m| m.ino()).unwrap_or(0) == own {
            continue;
        }
        ns.push((f, *flag));
    }
    // The pidfd check after opening proves the namespaces belong to init and not to a process that reused its PID.
    if st.init_pidfd().is_none() {
        return Err(StateError::WrongStatus {
            id: opts.id.clone(),
            status: "stopped".into(),
            action: "exec",
            need: "running",
        }
        .into());
    }
    // Host paths must be opened before joining the container's mount namespace.
    let pid_file = match &opts.pid_file {
        Some(pf) => Some(std::fs::File::create(pf).map_err(|source| StateError::Io {
            what: "create pid file",
            path: pf.clone(),
            source,
        })?),
        None => None,
    };
    let console = match (
        &opts.console_socket,
        opts.process.terminal().unwrap_or(false),
    ) {
        (Some(path), true) => Some(tty::connect(path)?),
        _ => None,
    };
    let layout = Layout::detect()?;
    Cgroup::from_dirs(&layout, &st.cgroup_dirs).add_pid(std::process::id() as i32)?;
    for (f, flag) in &ns {
        setns(f.as_fd(), *flag).map_err(sys(format!("setns {flag:?}")))?;
    }
    let (err_r, err_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    // SAFETY: single-threaded process (see module doc).
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(err_r);
            let e = child(opts, console.as_ref(), seccomp.as_ref());
            let _ = nix::unistd::write(&err_w, e.to_string().as_bytes());
            // SAFETY: leave the forked child at once.
            unsafe { libc::_exit(127) };
        }
        ForkResult::Parent { child } => {
            drop(err_w);
            let mut msg = Vec::new();
            let mut buf = [0u8; 1024];
            while let Ok(n) = nix::unistd::read(&err_r, &mut buf) {
                if n == 0 {
                    break;
                }
                msg.extend_from_slice(&buf[..n]);
            }
            if !msg.is_empty() {
                let _ = waitpid(child, None);
                return Err(SetupError::Child(String::from_utf8_lossy(&msg).into_owned()).into());
            }
            if let (Some(mut f), Some(pf)) = (pid_file, &opts.pid_file) {
                use std::io::Write;
                f.write_all(child.as_raw().to_string().as_bytes())
                    .map_err(|source| StateError::Io {
                        what: "write pid file",
                        path: pf.clone(),
                        source,
                    })?;
            }
            if opts.detach {
                return Ok(0);
            }
            wait_exit(child)
        }
    }
}

fn wait_exit(child: Pid) -> Result<i32> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => {
                return Err(SetupError::Sys {
                    op: "wait exec process".into(),
                    source: e,
                }
                .into());
            }
        }
    }
}

fn child(
    opts: &ExecOptions,
    console: Option<&std::os::unix::net::UnixStream>,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> crate::Error {
    let run = || -> Result<std::convert::Infallible> {
        let p = &opts.process;
        if p.terminal().unwrap_or(false) {
            setsid().map_err(sys("setsid"))?;
            if let Some(sock) = console {
                // Opened inside the container, so the slave lives in its devpts.
                let (master, slave) = tty::open_pty()?;
                tty::send_fd_on(sock, master.as_raw_fd())?;
                drop(master);
                tty::become_console(&slave)?;
            } else if opts.inherit_tty {
                // SAFETY: make the inherited stdin our controlling terminal.
                if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
                    return Err(SetupError::Io {
                        op: "TIOCSCTTY".into(),
                        source: std::io::Error::last_os_error(),
                    }
                    .into());
                }
            }
        }
        process::set_rlimits(p)?;
        process::chdir_cwd(p)?;
        Ok(process::finalize_and_exec(p, seccomp, 0)?)
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}
