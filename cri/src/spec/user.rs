//! Who the container runs as: CRI run_as_user / run_as_username / run_as_group, else the image's `User`, with names
//! resolved from the container rootfs's /etc/passwd and /etc/group.
//!
//! The rootfs is untrusted image content: the files are opened with `openat2(RESOLVE_IN_ROOT)`, so a symlinked
//! `/etc/passwd` resolves inside the rootfs and never reaches the host's files (kernels without openat2 refuse
//! symlinks on the way instead). A missing file means only numeric ids can be used.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use berth_snapshotter::RuntimeConfig;

use super::{SpecError, security_context};
use crate::api::{ContainerConfig, SupplementalGroupsPolicy};

/// The resolved identity of the container's process; ContainerStatus reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the groups /etc/group lists the user in, then CRI `supplemental_groups`.
    pub additional_gids: Vec<u32>,
    /// The user's name, when /etc/passwd knows it.
    pub username: Option<String>,
}

impl User {
    pub(crate) fn to_oci(&self) -> oci_spec::runtime::User {
        let mut u = oci_spec::runtime::User::default();
        u.set_uid(self.uid);
        u.set_gid(self.gid);
        u.set_umask(None);
        u.set_additional_gids(Some(self.additional_gids.clone()));
        u.set_username(None);
        u
    }
}

/// Largest /etc/passwd or /etc/group we read.
const MAX_FILE: u64 = 16 << 20;

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

fn open_in_root(root: &File, rel: &str) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    let c = std::ffi::CString::new(rel).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and a filled open_how of the size we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor.
        return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    // No openat2: walk the path refusing every symlink.
    let mut cur = root.try_clone()?;
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if *part == ".." {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        let last = i + 1 == parts.len();
        let flags = libc::O_CLOEXEC
            | libc::O_NOFOLLOW
            | libc::O_NOCTTY
            | if last {
                libc::O_RDONLY
            } else {
                libc::O_PATH | libc::O_DIRECTORY
            };
        let c = std::ffi::CString::new(*part).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: openat with a valid dirfd and a NUL-terminated name.
        let fd = unsafe { libc::openat(cur.as_raw_fd(), c.as_ptr(), flags) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor.
        cur = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(cur)
}

/// Read `rel` (e.g. `etc/passwd`) inside `rootfs`; `Ok(None)` when it does not exist.
pub(crate) fn read_in_root(rootfs: &Path, rel: &str) -> Result<Option<String>, SpecError> {
    let err = |source| SpecError::Rootfs {
        path: format!("/{rel}"),
        source,
    };
    let root = File::open(rootfs).map_err(|source| SpecError::Rootfs {
        path: rootfs.display().to_string(),
        source,
    })?;
    let f = match open_in_root(&root, rel) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    if !f.metadata().map_err(err)?.is_file() {
        return Err(err(std::io::Error::other("not a regular file")));
    }
    let mut buf = Vec::new();
    f.take(MAX_FILE).read_to_end(&mut buf).map_err(err)?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn id_from_i64(v: i64, what: &str) -> Result<u32, SpecError> {
    u32::try_from(v).map_err(|_| SpecError::User {
        user: v.to_string(),
        reason: format!("{what} must be between 0 and {}", u32::MAX),
    })
}

/// Resolve the container's uid, gid and additional gids.
///
/// The user is `run_as_username`, else `run_as_user`, each with `run_as_group` as the group; without either, the
/// image's `User` (`name`, `uid`, `name:group`, `uid:gid`); without that, root. A numeric uid unknown to
/// /etc/passwd runs with gid 0 (unless a group is given); a name must be found.
pub fn resolve_user(
    config: &ContainerConfig,
    image: &RuntimeConfig,
    rootfs: &Path,
) -> Result<User, SpecError> {
    let sc = security_context(config);
    let (user_part, group_part): (String, Option<String>) = if !sc.run_as_username.is_empty() {
        (
            sc.run_as_username.clone(),
            sc.run_as_group
                .as_ref()
                .map(|g| id_from_i64(g.value, "run_as_group").map(|g| g.to_string()))
                .transpose()?,
        )
    } else if let Some(u) = &sc.run_as_user {
        (
            id_from_i64(u.value, "run_as_user")?.to_string(),
            sc.run_as_group
                .as_ref()
                .map(|g| id_from_i64(g.value, "run_as_group").map(|g| g.to_string()))
                .transpose()?,
        )
    } else if sc.run_as_group.is_some() {
        return Err(SpecError::GroupWithoutUser);
    } else {
        let s = image.user.clone().unwrap_or_default();
        let s = s.trim();
        if s.is_empty() {
            ("0".to_string(), None)
        } else {
            match s.split_once(':') {
                Some((u, g)) => (u.to_string(), Some(g.to_string())),
                None => (s.to_string(), None),
            }
        }
    };
    let whole = match &group_part {
        Some(g) => format!("{user_part}:{g}"),
        None => user_part.clone(),
    };
    if user_part.is_empty() || group_part.as_deref().is_some_and(str::is_empty) {
        return Err(SpecError::User {
            user: whole,
            reason: "expected name, uid, name:group or uid:gid".into(),
        });
    }

    let passwd = read_in_root(rootfs, "etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let (uid, mut gid, username) = match user_part.parse::<u32>() {
        Ok(uid) => match passwd.iter().find(|p| p.uid == uid) {
            Some(p) => (uid, p.gid, Some(p.name.clone())),
            None => (uid, 0, None),
        },
        Err(_) if user_part.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
            return Err(SpecError::User {
                user: whole,
                reason: format!("uid must be between 0 and {}", u32::MAX),
            });
        }
        Err(_) => match passwd.iter().find(|p| p.name == user_part) {
            Some(p) => (p.uid, p.gid, Some(p.name.clone())),
            None => return Err(SpecError::UserNotFound(user_part)),
        },
    };

    let strict = sc.supplemental_groups_policy() == SupplementalGroupsPolicy::Strict;
    let need_groups = !strict
        || group_part
            .as_deref()
            .is_some_and(|g| g.parse::<u32>().is_err());
    let groups = if need_groups {
        read_in_root(rootfs, "etc/group")?
            .map(|t| parse_group(&t))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    if let Some(g) = &group_part {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == *g)
                .map(|e| e.gid)
                .ok_or_else(|| SpecError::GroupNotFound(g.clone()))?,
        };
    }

    let mut additional = vec![gid];
    if !strict && let Some(name) = &username {
        for g in &groups {
            if g.members.iter().any(|m| m == name) {
                additional.push(g.gid);
            }
        }
    }
    for g in &sc.supplemental_groups {
        additional.push(id_from_i64(*g, "supplemental_groups")?);
    }
    let mut seen = std::collections::HashSet::new();
    additional.retain(|g| seen.insert(*g));
    Ok(User {
        uid,
        gid,
        additional_gids: additional,
        username,
    })
}
