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
