//! The container's mounts, in containerd's order: the defaults (proc, /dev, devpts, mqueue, sysfs, cgroup) minus
//! those a CRI mount replaces, then the pod's files and the CRI mounts, shallow destinations first.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use super::{PodContext, SpecError};
use crate::api::{ContainerConfig, LinuxContainerSecurityContext, MountPropagation};

pub struct Mounts {
    pub mounts: Vec<Mount>,
    pub rootfs_propagation: Option<String>,
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// containerd's default mounts (without /run), sysfs and cgroup writable only for privileged containers.
fn defaults(privileged: bool) -> Vec<Mount> {
    let ro = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro]),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro],
        ),
    ]
}

/// `path` lexically cleaned (`/a//b/../c/` -> `/a/c`); None if it is not absolute.
pub fn clean(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Some(out)
}

fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

struct Bind {
    dest: PathBuf,
    source: PathBuf,
    readonly: bool,
    propagation: MountPropagation,
}

/// The mounts of a container.
pub fn mounts(
    pod: &PodContext,
    config: &ContainerConfig,
    sc: &LinuxContainerSecurityContext,
) -> Result<Mounts, SpecError> {
    let mut binds: Vec<Bind> = Vec::new();
    for m in &config.mounts {
        let err = |reason: String| SpecError::Mount {
            path: m.container_path.clone(),
            reason,
        };
        let dest = clean(&m.container_path)
            .ok_or_else(|| err("container_path must be an absolute path".into()))?;
        if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
            return Err(err("image volumes are not supported".into()));
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(err("id-mapped mounts are not supported".into()));
        }
        if m.recursive_read_only {
            return Err(err("recursive read-only mounts are not supported".into()));
        }
        if m.host_path.is_empty() {
            return Err(err("host_path is empty".into()));
        }
        if binds.iter().any(|b| b.dest == dest) {
            return Err(err("duplicate mount destination".into()));
        }
        // As containerd and the kubelet do: a missing host path becomes a directory.
        let host = Path::new(&m.host_path);
        match std::fs::symlink_metadata(host) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(host)
                    .map_err(|e| err(format!("create host path {}: {e}", m.host_path)))?;
            }
            Err(e) => return Err(err(format!("stat host path {}: {e}", m.host_path))),
        }
        let source = std::fs::canonicalize(host)
            .map_err(|e| err(format!("resolve host path {}: {e}", m.host_path)))?;
        binds.push(Bind {
            dest,
            source,
            readonly: m.readonly,
            propagation: m.propagation(),
        });
    }
    // The pod's files, unless a CRI mount takes their place.
    let ro = sc.readonly_rootfs;
    let shm = pod.shm.clone().unwrap_or_else(|| PathBuf::from("/dev/shm"));
    for (dest, source, readonly) in [
        ("/etc/hostname", pod.hostname_file.clone(), ro),
        ("/etc/hosts", pod.hosts_file.clone(), ro),
        ("/etc/resolv.conf", pod.resolv_conf.clone(), ro),
        ("/dev/shm", shm, false),
    ] {
        let dest = PathBuf::from(dest);
        if binds.iter().any(|b| b.dest == dest) {
            continue;
        }
        binds.push(Bind {
            dest,
            source,
            readonly,
            propagation: MountPropagation::PropagationPrivate,
        });
    }
    // Parents before children; stable, so equal depths keep the request's order.
    binds.sort_by_key(|b| depth(&b.dest));

    let supplied_dev = binds.iter().any(|b| b.dest == Path::new("/dev"));
    let mut out: Vec<Mount> = defaults(sc.privileged)
        .into_iter()
        .filter(|m| {
            let d = m.destination();
            let replaced = binds.iter().any(|b| b.dest == *d);
            let under_supplied_dev = supplied_dev && d.starts_with("/dev/");
            !replaced && !under_supplied_dev
        })
        .collect();
    let mut rootfs_propagation: Option<String> = None;
    for b in binds {
        let mut options = vec!["rbind".to_string()];
        match b.propagation {
            MountPropagation::PropagationPrivate => options.push("rprivate".into()),
            MountPropagation::PropagationHostToContainer => {
                options.push("rslave".into());
                if rootfs_propagation.as_deref() != Some("rshared") {
                    rootfs_propagation = Some("rslave".into());
                }
            }
            MountPropagation::PropagationBidirectional => {
                options.push("rshared".into());
                rootfs_propagation = Some("rshared".into());
            }
        }
        options.push(if b.readonly { "ro" } else { "rw" }.into());
        let mut m = Mount::default();
        m.set_destination(b.dest);
        m.set_typ(Some("bind".into()));
        m.set_source(Some(b.source));
        m.set_options(Some(options));
        out.push(m);
    }
    Ok(Mounts {
        mounts: out,
        rootfs_propagation,
    })
}
