//! Pod namespaces without a pause container: create network, IPC and UTS namespaces once and keep them alive by
//! bind-mounting their `/proc/self/ns/*` files onto files in the pod's state dir (as CRI-O's pinns does).
//!
//! [`pin`] runs in `berth-pinns`, a fresh single-threaded process (unshare(2) of a multi-threaded daemon would
//! move only one thread): it unshares, configures the new namespaces from inside (hostname, loopback up, sysctls,
//! which apply to the namespaces of the writing task) and bind-mounts them, then exits. Containers join the pinned
//! files by path. [`unpin`] is safe anywhere: it only unmounts and removes files.
//!
//! A PID namespace cannot be kept by a file alone: once its init exits no process can enter it. A pod that
//! shares one PID namespace (`--pid`) therefore gets a tiny init, forked here as PID 1 of the new namespace,
//! that only reaps orphans until it is killed; its pid and start time are written to `<dir>/pid-init`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// Which namespaces to pin, and how to set them up.
#[derive(Debug, Clone, Default)]
pub struct PinRequest {
    /// Where the pinned files go: `<dir>/net`, `<dir>/ipc`, `<dir>/uts`.
    pub dir: PathBuf,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// A shared PID namespace with its own minimal init.
    pub pid: bool,
    /// Set in the new UTS namespace.
    pub hostname: Option<String>,
    /// `net.*`, `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`: written inside the new namespaces.
    pub sysctls: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("sysctl {key}: {reason}")]
    Sysctl { key: String, reason: String },
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> PinError {
    let what = what.into();
    move |e| PinError::Sys {
        what,
        source: io::Error::from(e),
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PinError {
    let what = what.into();
    move |source| PinError::Sys { what, source }
}

/// The namespace kinds, in the order they are pinned and unpinned.
const KINDS: [&str; 4] = ["net", "ipc", "uts", "pid"];

/// `<dir>/pid-init`: "PID START_TIME" of a shared PID namespace's init.
const PID_INIT: &str = "pid-init";

/// Creates and pins the requested namespaces. Must run in a single-threaded process that may be discarded:
/// the calling process itself moves into the new namespaces.
pub fn pin(req: &PinRequest) -> Result<(), PinError> {
    let mut flags = CloneFlags::empty();
    for (want, flag) in [
        (req.net, CloneFlags::CLONE_NEWNET),
        (req.ipc, CloneFlags::CLONE_NEWIPC),
        (req.uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if want {
            flags |= flag;
        }
    }
    unshare(flags).map_err(sys("unshare"))?;
    if let Some(h) = &req.hostname {
        nix::unistd::sethostname(h).map_err(sys(format!("sethostname {h:?}")))?;
    }
    if req.net {
        loopback_up()?;
    }
    for (key, value) in &req.sysctls {
        write_sysctl(key, value)?;
    }
    fs::create_dir_all(&req.dir).map_err(io_err(format!("creating {}", req.dir.display())))?;
    let init = if req.pid {
        Some(start_pid_init(&req.dir)?)
    } else {
        None
    };
    let mut pinned = Vec::new();
    for (kind, want) in KINDS.iter().zip([req.net, req.ipc, req.uts, req.pid]) {
        if !want {
            continue;
        }
        let target = req.dir.join(kind);
        let result = fs::File::create(&target)
            .map_err(io_err(format!("creating {}", target.display())))
            .and_then(|_| {
                // Our own namespaces, except PID: unshare(CLONE_NEWPID) moved only our children, the init.
                let src = match (kind, init) {
                    (&"pid", Some(pid)) => format!("/proc/{pid}/ns/pid"),
                    _ => format!("/proc/self/ns/{kind}"),
                };
                mount(
                    Some(src.as_str()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(sys(format!("bind-mounting {src} on {}", target.display())))
            });
        if let Err(e) = result {
            // Leave nothing half-pinned behind.
            for t in &pinned {
                let _ = umount2(t, MntFlags::MNT_DETACH);
                let _ = fs::remove_file(t);
            }
            let _ = fs::remove_file(&target);
            kill_pid_init(&req.dir);
            return Err(e);
        }
        pinned.push(target);
    }
    Ok(())
}

/// Forks the init of a new PID namespace and records it; returns its pid (in our namespace).
fn start_pid_init(dir: &Path) -> Result<i32, PinError> {
    use nix::unistd::{ForkResult, fork};
    unshare(CloneFlags::CLONE_NEWPID).map_err(sys("unshare pid"))?;
    // SAFETY: berth-pinns is single-threaded, so the child may run arbitrary code after fork.
    match unsafe { fork() }.map_err(sys("fork pod init"))? {
        ForkResult::Child => pid_init(),
        ForkResult::Parent { child } => {
            let pid = child.as_raw();
            let start =
                crate::util::proc_start_time(pid).map_err(io_err("reading pod init start time"))?;
            let file = dir.join(PID_INIT);
            fs::write(&file, format!("{pid} {start}\n"))
                .map_err(io_err(format!("writing {}", file.display())))?;
            Ok(pid)
        }
    }
}

/// PID 1 of a pod's shared PID namespace: detached, silent, reaping orphans until killed.
///
/// It ignores SIGCHLD, so the kernel reaps its children itself, including zombies reparented to it (an exec
/// whose runtime died first): no wait loop to get wrong, and nothing to do but sleep.
fn pid_init() -> ! {
    use nix::sys::signal::{SigHandler, Signal, signal};
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(c"berth-pod-init");
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of our own process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let _ = std::env::set_current_dir("/");
    // SAFETY: setting a disposition to SIG_IGN installs no handler code.
    let _ = unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) };
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    loop {
        nix::unistd::pause();
    }
}

/// Kills a shared PID namespace's init (and so every process left in the namespace), if it is still the same
/// process that was recorded.
fn kill_pid_init(dir: &Path) {
    let Ok(text) = fs::read_to_string(dir.join(PID_INIT)) else {
        return;
    };
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    if let (Some(Some(pid)), Some(Some(start))) = (it.next(), it.next())
        && let Ok(Some(fd)) = crate::util::pidfd_for(pid as i32, start)
    {
        let _ = crate::util::pidfd_send_signal(&fd, libc::SIGKILL);
    }
    let _ = fs::remove_file(dir.join(PID_INIT));
}

/// Unmounts and removes whatever is pinned in `dir`, and kills a shared PID namespace's init; idempotent.
pub fn unpin(dir: &Path) -> Result<(), PinError> {
    kill_pid_init(dir);
    for kind in KINDS {
        let target = dir.join(kind);
        match umount2(&target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(sys(format!("unmounting {}", target.display()))(e)),
        }
        match fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", target.display()))(e)),
        }
    }
    Ok(())
}

/// A new network namespace has only `lo`, and down: containers expect 127.0.0.1 to work.
fn loopback_up() -> Result<(), PinError> {
    // SAFETY: socket/ioctl on a local fd with a zeroed, correctly sized ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io_err("socket for loopback")(io::Error::last_os_error()));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            return Err(io_err("bringing lo up")(err));
        }
    }
    Ok(())
}

/// Only namespaced sysctls may be set for a pod: anything else would change the host.
pub fn sysctl_is_namespaced(key: &str) -> bool {
    key.starts_with("net.")
        || key.starts_with("fs.mqueue.")
        || matches!(
            key,
            "kernel.shm_rmid_forced"
                | "kernel.shmmax"
                | "kernel.shmall"
                | "kernel.shmmni"
                | "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
        )
}

fn write_sysctl(key: &str, value: &str) -> Result<(), PinError> {
    let bad = |reason: &str| PinError::Sysctl {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if !sysctl_is_namespaced(key) {
        return Err(bad(
            "not a namespaced sysctl; a pod may not change the host's",
        ));
    }
    if key.split(['.', '/']).any(|p| p.is_empty() || p == "..") {
        return Err(bad("malformed name"));
    }
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    fs::write(&path, value).map_err(|e| bad(&e.to_string()))
}

/// `berth-pinns --dir DIR [--net] [--ipc] [--uts] [--pid] [--hostname H] [--sysctl K=V]...`; exit 0 when pinned.
pub fn main(args: Vec<String>) -> i32 {
    let mut req = PinRequest::default();
    let mut it = args.into_iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => req.dir = it.next().unwrap_or_default().into(),
            "--net" => req.net = true,
            "--ipc" => req.ipc = true,
            "--uts" => req.uts = true,
            "--pid" => req.pid = true,
            "--hostname" => req.hostname = it.next(),
            "--sysctl" => {
                let kv = it.next().unwrap_or_default();
                match kv.split_once('=') {
                    Some((k, v)) => {
                        req.sysctls.insert(k.to_string(), v.to_string());
                    }
                    None => {
                        eprintln!("berth-pinns: --sysctl wants KEY=VALUE, got {kv:?}");
                        return 2;
                    }
                }
            }
            other => {
                eprintln!("berth-pinns: unknown argument {other:?}");
                return 2;
            }
        }
    }
    if req.dir.as_os_str().is_empty() {
        eprintln!("berth-pinns: --dir is required");
        return 2;
    }
    match pin(&req) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth-pinns: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls_are_allowed() {
        assert!(sysctl_is_namespaced("net.ipv4.ip_forward"));
        assert!(sysctl_is_namespaced("kernel.shm_rmid_forced"));
        assert!(!sysctl_is_namespaced("kernel.panic"));
        assert!(!sysctl_is_namespaced("vm.swappiness"));
        assert!(matches!(
            write_sysctl("vm.swappiness", "1"),
            Err(PinError::Sysctl { .. })
        ));
        assert!(matches!(
            write_sysctl("net..x", "1"),
            Err(PinError::Sysctl { .. })
        ));
    }
}
