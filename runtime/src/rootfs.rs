//! The container's root filesystem, built inside its new mount namespace before `pivot_root`:
//! the spec's mounts, a cgroupfs view, default device nodes and `/dev` symlinks; then `pivot_root`; then masked and
//! read-only paths and a read-only root. Runs in init, single-threaded, never in the daemon.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::unistd::{chdir, fchdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

use crate::cgroups::Layout;
use crate::error::{SetupError, io, sys};
use crate::mounts::{self, secure_join};

type Result<T> = std::result::Result<T, SetupError>;

const NONE: Option<&str> = None;

/// What rootfs setup needs besides the spec.
pub struct Context<'a> {
    pub rootfs: &'a Path,
    /// Init is in a new user namespace: device nodes must be bind-mounted, mknod is refused.
    pub in_userns: bool,
    /// Init has its own cgroup namespace: cgroupfs can be mounted, not just bound.
    pub cgroupns: bool,
    pub layout: Option<&'a Layout>,
    /// The container's cgroup directories on the host, bound in place when there is no cgroup namespace.
    pub cgroup_dirs: &'a [PathBuf],
    /// The pty slave to show as /dev/console, when `terminal` is true.
    pub console: Option<&'a Path>,
}

/// Everything before `pivot_root`: propagation, the rootfs bind, the spec's mounts and /dev.
pub fn prepare(spec: &Spec, ctx: &Context) -> Result<()> {
    let linux = spec.linux().as_ref();
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(mounts::propagation)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // Make our copy of the host's mounts stop propagating back to the host.
    mount(NONE, "/", NONE, prop, NONE).map_err(sys("make / private"))?;
    // With rootfsPropagation rshared the mount holding the rootfs is shared too, and pivot_root refuses a new root
    // whose parent mount is shared (EINVAL): make just that one private before binding, as runc does.
    make_parent_mount_private(ctx.rootfs)?;
    mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .map_err(sys(format!("bind rootfs {}", ctx.rootfs.display())))?;

    let mut dev_is_tmpfs = false;
    for m in spec.mounts().iter().flatten() {
        let opts = mounts::parse(m.options().as_deref().unwrap_or_default());
        if m.destination() == Path::new("/dev") && !opts.is_bind() {
            dev_is_tmpfs = true;
        }
        mount_one(m, &opts, ctx)?;
    }
    if dev_is_tmpfs {
        create_devices(spec, ctx)?;
        dev_symlinks(ctx.rootfs)?;
    }
    if let Some(console) = ctx.console {
        let dst = ctx.rootfs.join("dev/console");
        ensure_file(&dst)?;
        mount(Some(console), &dst, NONE, MsFlags::MS_BIND, NONE)
            .map_err(sys("bind /dev/console"))?;
    }
    Ok(())
}

fn mount_one(m: &Mount, opts: &mounts::Options, ctx: &Context) -> Result<()> {
    let dest = secure_join(ctx.rootfs, m.destination());
    let typ = m.typ().as_deref().unwrap_or("");
    let data = if opts.data.is_empty() {
        None
    } else {
        Some(opts.data.as_str())
    };
    if opts.is_bind() {
        let src = m.source().clone().unwrap_or_default();
        let meta = fs::metadata(&src).map_err(io(format!("bind source {}", src.display())))?;
        if meta.is_dir() {
            fs::create_dir_all(&dest).map_err(io(format!("mkdir {}", dest.display())))?;
        } else {
            ensure_file(&dest)?;
        }
        let bind = opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        mount(Some(&src), &dest, NONE, bind, NONE).map_err(sys(format!(
            "bind {} on {}",
            src.display(),
            dest.display()
        )))?;
        let rest = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !rest.is_empty() {
            remount_bind(&dest, rest)?;
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        mount_cgroups(&dest, opts, ctx)?;
    } else {
        fs::create_dir_all(&dest).map_err(io(format!("mkdir {}", dest.display())))?;
        let src = m
            .source()
            .as_deref()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(typ));
        match mount(Some(&src), &dest, Some(typ), opts.flags, data) {
            Ok(()) => {}
            // sysfs cannot be mounted for a network namespace we do not own: show the host's, read-only.
            Err(nix::Error::EPERM) if typ == "sysfs" => {
                mount(
                    Some("/sys"),
                    &dest,
                    NONE,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    NONE,
                )
                .map_err(sys("bind /sys"))?;
                remount_bind(&dest, opts.flags | MsFlags::MS_RDONLY)?;
            }
            Err(e) => {
                return Err(SetupError::Sys {
                    op: format!("mount {typ} on {}", dest.display()),
                    source: e,
                });
            }
        }
    }
    for p in &opts.propagation {
        mount(NONE, &dest, NONE, *p, NONE)
            .map_err(sys(format!("set propagation of {}", dest.display())))?;
    }
    Ok(())
}

/// Remount a bind mount with new flags, keeping the ones the kernel locked (a remount may not drop them).
fn remount_bind(dest: &Path, flags: MsFlags) -> Result<()> {
    let locked = nix::sys::statvfs::statvfs(dest)
        .map(|s| {
            use nix::sys::statvfs::FsFlags;
            let f = s.flags();
            let mut m = MsFlags::empty();
            for (a, b) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(a) {
                    m |= b;
                }
            }
            m
        })
        .unwrap_or(MsFlags::empty());
    mount(
        NONE,
        dest,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked,
        NONE,
    )
    .map_err(sys(format!("remount {}", dest.display())))
}

/// Show the container its cgroups at `dest`: cgroup2 on a v2 host; on v1/hybrid a tmpfs with one mount per hierarchy.
fn mount_cgroups(dest: &Path, opts: &mounts::Options, ctx: &Context) -> Result<()> {
    fs::create_dir_all(dest).map_err(io(format!("mkdir {}", dest.display())))?;
    let flags = opts.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let Some(layout) = ctx.layout else {
        return Ok(());
    };
    if layout.is_v2() {
        return if ctx.cgroupns {
            mount(Some("cgroup2"), dest, Some("cgroup2"), flags, NONE).map_err(sys("mount cgroup2"))
        } else {
            let d = ctx
                .cgroup_dirs
                .first()
                .ok_or_else(|| SetupError::Invalid("no cgroup directory".into()))?;
            mount(Some(d), dest, NONE, MsFlags::MS_BIND, NONE).map_err(sys("bind cgroup"))?;
            remount_bind(dest, flags)
        };
    }
    mount(
        Some("tmpfs"),
        dest,
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(sys("mount cgroup tmpfs"))?;
    for h in &layout.hierarchies {
        let (name, data) = match (&h.name, h.v2) {
            (_, true) => ("unified".to_string(), String::new()),
            (Some(n), false) if h.controllers.is_empty() => (n.clone(), format!("none,name={n}")),
            _ => (h.controllers.join(","), h.controllers.join(",")),
        };
        let sub = dest.join(&name);
        fs::create_dir_all(&sub).map_err(io(format!("mkdir {}", sub.display())))?;
        if ctx.cgroupns {
            let (typ, data) = if h.v2 {
                ("cgroup2", None)
            } else {
                ("cgroup", Some(data.as_str()))
            };
            mount(Some(typ), &sub, Some(typ), flags, data)
                .map_err(sys(format!("mount cgroup {name}")))?;
        } else if let Some(d) = ctx.cgroup_dirs.iter().find(|d| d.starts_with(&h.mount)) {
            mount(Some(d), &sub, NONE, MsFlags::MS_BIND, NONE)
                .map_err(sys(format!("bind cgroup {name}")))?;
            remount_bind(&sub, flags)?;
        }
    }
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(
            dest,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )
        .or_else(|_| {
            mount(
                NONE,
                dest,
                NONE,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
                Some("mode=755"),
            )
            .map_err(sys("remount cgroup tmpfs read-only"))
        })?;
    }
    Ok(())
}

fn ensure_file(p: &Path) -> Result<()> {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).map_err(io(format!("mkdir {}", parent.display())))?;
    }
    if fs::symlink_metadata(p).is_err() {
        fs::File::create(p).map_err(io(format!("create {}", p.display())))?;
    }
    Ok(())
}

/// The device nodes every container gets (major, minor, path), as runc creates them.
const DEFAULT_DEVICES: &[(u64, u64, &str)] = &[
    (1, 3, "null"),
    (1, 5, "zero"),
    (1, 7, "full"),
    (1, 8, "random"),
    (1, 9, "urandom"),
    (5, 0, "tty"),
];

fn create_devices(spec: &Spec, ctx: &Context) -> Result<()> {
    let mut devs: Vec<(SFlag, u64, u64, PathBuf, u32, u32, u32)> = DEFAULT_DEVICES
        .iter()
        .map(|(ma, mi, n)| {
            (
                SFlag::S_IFCHR,
                *ma,
                *mi,
                PathBuf::from("/dev").join(n),
                0o666,
                0,
                0,
            )
        })
        .collect();
    for d in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let kind = match crate::util::serde_name(&d.typ()).as_str() {
            "b" => SFlag::S_IFBLK,
            "p" => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        devs.retain(|x| x.3 != *d.path());
        let (uid, gid) = (d.uid().unwrap_or(0), d.gid().unwrap_or(0));
        devs.push((
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.path().clone(),
            d.file_mode().unwrap_or(0o666),
            uid,
            gid,
        ));
    }
    for (kind, major, minor, path, mode, uid, gid) in devs {
        let dest = secure_join(ctx.rootfs, &path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io(format!("mkdir {}", parent.display())))?;
        }
        if ctx.in_userns {
            ensure_file(&dest)?;
            mount(Some(&path), &dest, NONE, MsFlags::MS_BIND, NONE)
                .map_err(sys(format!("bind {}", path.display())))?;
            continue;
        }
        let _ = fs::remove_file(&dest);
        mknod(
            &dest,
            kind,
            Mode::from_bits_truncate(mode),
            makedev(major, minor),
        )
        .map_err(sys(format!("mknod {}", dest.display())))?;
        // mknod honours the umask; set the mode the spec asked for.
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io("chmod device"))?;
        nix::unistd::chown(&dest, Some(uid.into()), Some(gid.into()))
            .map_err(sys("chown device"))?;
    }
    Ok(())
}

fn dev_symlinks(rootfs: &Path) -> Result<()> {
    let mut links = vec![
        ("/proc/self/fd", "dev/fd"),
        ("/proc/self/fd/0", "dev/stdin"),
        ("/proc/self/fd/1", "dev/stdout"),
        ("/proc/self/fd/2", "dev/stderr"),
    ];
    if rootfs.join("dev/pts").is_dir() {
        links.push(("pts/ptmx", "dev/ptmx"));
    }
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "dev/core"));
    }
    for (target, link) in links {
        let p = rootfs.join(link);
        if fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        symlink(target, &p).map_err(io(format!("symlink {}", p.display())))?;
    }
    Ok(())
}

/// Makes the mount that holds `rootfs` (the rootfs itself when it is a mount point, as an overlay rootfs is) private
/// when it is shared: it becomes the parent of the rootfs bind, and pivot_root refuses a shared parent.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let parent = rootfs;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(crate::error::io("read /proc/self/mountinfo"))?;
    // The innermost mount whose mount point is an ancestor of (or equal to) the rootfs; later lines win ties.
    let mut best: Option<(&str, bool)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(sep)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let under = parent.starts_with(point);
        if under && best.is_none_or(|(b, _)| point.len() >= b.len()) {
            let shared = fields[6..sep].iter().any(|f| f.starts_with("shared:"));
            best = Some((point, shared));
        }
    }
    if let Some((point, true)) = best {
        mount(NONE, point, NONE, MsFlags::MS_PRIVATE, NONE)
            .map_err(sys(format!("make {point} private")))?;
    }
    Ok(())
}

/// `pivot_root` into the rootfs and detach the old root (the runc sequence that needs no temporary directory).
pub fn pivot(rootfs: &Path) -> Result<()> {
    let old = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open /"))?;
    let new = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open rootfs"))?;
    fchdir(&new).map_err(sys("chdir rootfs"))?;
    pivot_root(".", ".").map_err(sys("pivot_root"))?;
    fchdir(&old).map_err(sys("chdir old root"))?;
    // Old root's mounts must not propagate the detach to the host.
    mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
        .map_err(sys("make old root slave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach old root"))?;
    chdir("/").map_err(sys("chdir /"))
}

/// After `pivot_root`: masked paths, read-only paths, read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new(p);
        match mount(
            Some(path),
            path,
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        ) {
            Ok(()) => remount_bind(path, MsFlags::MS_RDONLY | MsFlags::MS_REC)?,
            Err(nix::Error::ENOENT) => {}
            Err(e) => {
                return Err(SetupError::Sys {
                    op: format!("bind readonly path {p}"),
                    source: e,
                });
            }
        }
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new(p);
        let res = match fs::metadata(path) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => {
                mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)
            }
            Ok(_) => mount(Some("/dev/null"), path, NONE, MsFlags::MS_BIND, NONE),
        };
        res.map_err(sys(format!("mask {p}")))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY)?;
    }
    Ok(())
}
