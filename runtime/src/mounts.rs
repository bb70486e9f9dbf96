//! Mount options of the OCI spec as mount(2) flags, and path resolution that stays inside the rootfs.

use std::fs;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

/// A spec mount's options, split the way mount(2) wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Flags for the mount itself (MS_RDONLY, MS_NOSUID, MS_BIND, ...).
    pub flags: MsFlags,
    /// Flags cleared by an explicit opposite option (`rw`, `suid`, ...); kept to compute bind remounts.
    pub cleared: MsFlags,
    /// Propagation changes applied after mounting (MS_PRIVATE, MS_SLAVE|MS_REC, ...), in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data (`mode=755,size=65536k`).
    pub data: String,
}

impl Options {
    /// True for `bind` and `rbind` mounts.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
        }
    }
}

/// Parse mount options as runc does; unknown ones go to the filesystem as data.
pub fn parse(options: &[String]) -> Options {
    let mut o = Options::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let base = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                let rec = if opt.starts_with('r') {
                    MsFlags::MS_REC
                } else {
                    MsFlags::empty()
                };
                o.propagation.push(base | rec);
                continue;
            }
            // Options for other runtimes' features we do not implement; harmless to skip.
            "tmpcopyup" | "rro" | "rrw" | "nosymfollow" => continue,
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.cleared = (o.cleared | clear) & !set;
    }
    o.data = data.join(",");
    o
}

/// Parse a rootfs propagation name (`rootfsPropagation`).
pub fn propagation(name: &str) -> Option<MsFlags> {
    parse(&[name.to_string()]).propagation.first().copied()
}

/// Resolve `unsafe_path` under `root` following symlinks as if `root` were `/`, so a symlink in the image cannot
/// point a mount outside the container (the "securejoin" of runc).
pub fn secure_join(root: &Path, unsafe_path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = vec![unsafe_path.to_path_buf()];
    let mut links = 0;
    while let Some(p) = pending.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        comps.reverse();
        while let Some(c) = comps.pop() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => {
                    let candidate = resolved.join(name);
                    let full = root.join(&candidate);
                    match fs::symlink_metadata(&full) {
                        Ok(m) if m.file_type().is_symlink() && links < 255 => {
                            links += 1;
                            if let Ok(target) = fs::read_link(&full) {
                                // Re-resolve the target, then whatever remained after this component.
                                let rest: PathBuf =
                                    comps.iter().rev().map(|c| c.as_os_str()).collect();
                                if target.is_absolute() {
                                    resolved = PathBuf::new();
                                }
                                pending.push(rest);
                                pending.push(target);
                                break;
                            }
                            resolved = candidate;
                        }
                        _ => resolved = candidate,
                    }
                }
            }
        }
    }
    root.join(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Options {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = opts(&[
            "nosuid",
            "noexec",
            "mode=755",
            "size=65536k",
            "rbind",
            "rprivate",
            "ro",
        ]);
        assert!(o.flags.contains(
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_BIND | MsFlags::MS_REC
        ));
        assert!(o.flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(o.data, "mode=755,size=65536k");
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(!opts(&["ro", "rw"]).flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn secure_join_stays_inside() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        fs::create_dir_all(root.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("/real", root.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../../../etc", root.join("escape")).expect("symlink");
        assert_eq!(secure_join(root, Path::new("/abs/x")), root.join("real/x"));
        assert_eq!(
            secure_join(root, Path::new("/escape/passwd")),
            root.join("etc/passwd")
        );
        assert_eq!(secure_join(root, Path::new("/../../a")), root.join("a"));
    }
}
