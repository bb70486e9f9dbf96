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
        // As containerd: a pod without a hostname file (older state) gets none.
        if dest == Path::new("/etc/hostname") && !source.exists() {
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
    let mut mountinfo: Option<String> = None;
    for b in binds {
        if b.propagation != MountPropagation::PropagationPrivate {
            let info = match &mountinfo {
                Some(i) => i,
                None => mountinfo.insert(std::fs::read_to_string("/proc/self/mountinfo").map_err(
                    |e| SpecError::Mount {
                        path: b.dest.display().to_string(),
                        reason: format!("read /proc/self/mountinfo: {e}"),
                    },
                )?),
            };
            check_propagation(info, &b.source, b.propagation).map_err(|reason| {
                SpecError::Mount {
                    path: b.dest.display().to_string(),
                    reason,
                }
            })?;
        }
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

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount point holding `path` and whether it is shared / a slave, from mountinfo text.
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<(PathBuf, bool, bool)> {
    let mut best: Option<(PathBuf, bool, bool)> = None;
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(mp) = f.get(4).map(|m| PathBuf::from(unescape(m))) else {
            continue;
        };
        if !path.starts_with(&mp) {
            continue;
        }
        let optional = f.iter().skip(6).take_while(|x| **x != "-");
        let (mut shared, mut slave) = (false, false);
        for o in optional {
            shared |= o.starts_with("shared:");
            slave |= o.starts_with("master:");
        }
        // The deepest mount point wins; among equals, the last (topmost) one listed.
        if best.as_ref().is_none_or(|(b, _, _)| depth(&mp) >= depth(b)) {
            best = Some((mp, shared, slave));
        }
    }
    best
}

/// containerd's `ensureShared` / `ensureSharedOrSlave`: propagation needs a source mount that propagates.
pub fn check_propagation(
    mountinfo: &str,
    source: &Path,
    propagation: MountPropagation,
) -> Result<(), String> {
    let Some((mp, shared, slave)) = mount_of(mountinfo, source) else {
        return Err(format!("no mount holds {}", source.display()));
    };
    match propagation {
        MountPropagation::PropagationBidirectional if !shared => Err(format!(
            "path {} is mounted on {} but it is not a shared mount",
            source.display(),
            mp.display()
        )),
        MountPropagation::PropagationHostToContainer if !shared && !slave => Err(format!(
            "path {} is mounted on {} but it is not a shared or slave mount",
            source.display(),
            mp.display()
        )),
        _ => Ok(()),
    }
}
