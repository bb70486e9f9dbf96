//! Which namespaces a container gets: new ones are created by the clone that makes init, the ones with a path are
//! joined with `setns`, so the containers of one pod share the namespaces the pod pinned.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::{SetupError, sys};

/// The namespace part of a spec, resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    /// New namespaces to create at clone time (the cgroup one is created later, after init joined its cgroup).
    pub clone_flags: CloneFlags,
    /// A new cgroup namespace, unshared by init once it sits in its cgroup so the cgroup becomes its root.
    pub new_cgroup: bool,
    pub new_user: bool,
    pub new_mount: bool,
    pub new_uts: bool,
    /// Namespaces to join, user first and mount last (joining a user namespace first grants the rights to join the
    /// others it owns; joining mount last keeps the paths of the others resolvable).
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// `/proc/PID/ns` names of every namespace the container has of its own or shares with a pod; exec joins these.
    pub kinds: Vec<String>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            clone_flags: CloneFlags::empty(),
            new_cgroup: false,
            new_user: false,
            new_mount: false,
            new_uts: false,
            join: Vec::new(),
            kinds: Vec::new(),
        }
    }
}

/// Flag and `/proc/PID/ns` name of a namespace type; None for ones this runtime does not handle.
pub fn flag_and_name(t: LinuxNamespaceType) -> Option<(CloneFlags, &'static str)> {
    Some(match t {
        LinuxNamespaceType::Mount => (CloneFlags::CLONE_NEWNS, "mnt"),
        LinuxNamespaceType::Cgroup => (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
        LinuxNamespaceType::Uts => (CloneFlags::CLONE_NEWUTS, "uts"),
        LinuxNamespaceType::Ipc => (CloneFlags::CLONE_NEWIPC, "ipc"),
        LinuxNamespaceType::User => (CloneFlags::CLONE_NEWUSER, "user"),
        LinuxNamespaceType::Pid => (CloneFlags::CLONE_NEWPID, "pid"),
        LinuxNamespaceType::Network => (CloneFlags::CLONE_NEWNET, "net"),
        LinuxNamespaceType::Time => return None,
    })
}

/// Resolve the spec's namespace list.
pub fn plan(list: &[LinuxNamespace]) -> Result<Plan, SetupError> {
    let mut p = Plan::default();
    let mut join = Vec::new();
    for ns in list {
        let Some((flag, name)) = flag_and_name(ns.typ()) else {
            return Err(SetupError::Invalid(
                "time namespaces are not supported".into(),
            ));
        };
        if p.kinds.iter().any(|k| k == name) {
            return Err(SetupError::Invalid(format!(
                "namespace {name} listed twice"
            )));
        }
        p.kinds.push(name.to_string());
        match ns.path() {
            Some(path) => join.push((flag, path.clone())),
            None if flag == CloneFlags::CLONE_NEWCGROUP => p.new_cgroup = true,
            None => p.clone_flags |= flag,
        }
    }
    let order = |f: &CloneFlags| {
        if *f == CloneFlags::CLONE_NEWUSER {
            0
        } else if *f == CloneFlags::CLONE_NEWNS {
            2
        } else {
            1
        }
    };
    join.sort_by_key(|(f, _)| order(f));
    p.join = join;
    p.new_user = p.clone_flags.contains(CloneFlags::CLONE_NEWUSER);
    p.new_mount = p.clone_flags.contains(CloneFlags::CLONE_NEWNS);
    p.new_uts = p.clone_flags.contains(CloneFlags::CLONE_NEWUTS);
    Ok(p)
}

/// Join the namespace at `path`.
pub fn join(flag: CloneFlags, path: &Path) -> Result<(), SetupError> {
    let f = File::open(path).map_err(crate::error::io(format!(
        "open namespace {}",
        path.display()
    )))?;
    setns(f.as_fd(), flag).map_err(sys(format!("setns {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    #[test]
    fn joins_user_first_mount_last() {
        let ns = |t, p: Option<&str>| {
            let mut b = LinuxNamespaceBuilder::default().typ(t);
            if let Some(p) = p {
                b = b.path(p);
            }
            b.build().expect("namespace")
        };
        let p = plan(&[
            ns(LinuxNamespaceType::Mount, Some("/m")),
            ns(LinuxNamespaceType::Network, Some("/n")),
            ns(LinuxNamespaceType::User, Some("/u")),
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Cgroup, None),
        ])
        .expect("plan");
        let order: Vec<_> = p
            .join
            .iter()
            .map(|(_, p)| p.to_str().unwrap_or(""))
            .collect();
        assert_eq!(order, ["/u", "/n", "/m"]);
        assert!(p.new_cgroup && p.clone_flags == CloneFlags::CLONE_NEWPID);
    }
}

/// Namespaces pinned for a pod: bind mounts of `/proc/self/ns/<kind>` onto files in a directory, so containers
/// join them by path and no pause process has to hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pinned {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

/// What to pin.
#[derive(Debug, Clone, Default)]
pub struct PinOptions {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// Hostname set in the new UTS namespace.
    pub hostname: Option<String>,
}

/// Create new namespaces for the calling process and pin them under `dir`.
///
/// `unshare` changes the caller: only the `berth-runtime pin-ns` command calls this (a short-lived, single-threaded
/// process); the daemon reaches it through `handler::pin_namespaces`. The bind mounts are made in the caller's mount
/// namespace, the host's.
pub fn pin(dir: &Path, opts: &PinOptions) -> Result<Pinned, SetupError> {
    use nix::mount::{MsFlags, mount};
    std::fs::create_dir_all(dir).map_err(crate::error::io(format!("mkdir {}", dir.display())))?;
    let mut flags = CloneFlags::empty();
    let kinds: Vec<(&str, CloneFlags)> = [
        (opts.net, "net", CloneFlags::CLONE_NEWNET),
        (opts.ipc, "ipc", CloneFlags::CLONE_NEWIPC),
        (opts.uts, "uts", CloneFlags::CLONE_NEWUTS),
    ]
    .into_iter()
    .filter(|(on, _, _)| *on)
    .map(|(_, k, f)| (k, f))
    .collect();
    for (_, f) in &kinds {
        flags |= *f;
    }
    nix::sched::unshare(flags).map_err(sys("unshare pod namespaces"))?;
    if let (true, Some(h)) = (opts.uts, &opts.hostname) {
        nix::unistd::sethostname(h).map_err(sys("sethostname"))?;
    }
    if opts.net {
        loopback_up()?;
    }
    let mut pinned = Pinned::default();
    for (kind, _) in kinds {
        let target = dir.join(kind);
        std::fs::File::create(&target)
            .map_err(crate::error::io(format!("create {}", target.display())))?;
        let source = format!("/proc/thread-self/ns/{kind}");
        mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!("pin {kind} namespace on {}", target.display())))?;
        match kind {
            "net" => pinned.net = Some(target),
            "ipc" => pinned.ipc = Some(target),
            _ => pinned.uts = Some(target),
        }
    }
    Ok(pinned)
}

/// Unmount and remove pinned namespaces under `dir` (missing ones are fine). Safe from any thread.
pub fn unpin(dir: &Path) -> Result<(), SetupError> {
    for kind in ["net", "ipc", "uts"] {
        let p = dir.join(kind);
        if !p.exists() {
            continue;
        }
        match nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => {
                return Err(SetupError::Sys {
                    op: format!("unmount {}", p.display()),
                    source: e,
                });
            }
        }
        std::fs::remove_file(&p).map_err(crate::error::io(format!("remove {}", p.display())))?;
    }
    Ok(())
}

/// Bring `lo` up in the current network namespace (what the CNI loopback plugin would do).
fn loopback_up() -> Result<(), SetupError> {
    // SAFETY: a datagram socket and two ioctls on a zeroed, NUL-terminated ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(SetupError::Io {
                op: "socket".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut res = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if res == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            res = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if res != 0 {
            return Err(SetupError::Io {
                op: "bring lo up".into(),
                source: err,
            });
        }
    }
    Ok(())
}
