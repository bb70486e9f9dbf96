//! Mounting what a snapshotter returns.
//!
//! Overlay mounts go through the new mount API (`fsopen`/`fsconfig`/`fsmount`/`move_mount`) with one
//! `lowerdir+` per layer: mount(2) takes all options in one page, which 128 layers of absolute paths overflow,
//! while `fsconfig` takes each layer as its own string. Kernels without `lowerdir+` (before 6.8) fall back to
//! mount(2), which works while the options fit in a page.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One mount, in containerd's shape: `type`, `source`, `options` (overlay: `lowerdir=a:b`, `upperdir=`,
/// `workdir=`; bind: `rbind`, `ro`/`rw`). Lowerdirs are listed nearest layer first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

impl Mount {
    pub(crate) fn bind(source: &Path, readonly: bool) -> Mount {
        Mount {
            kind: "bind".into(),
            source: source.display().to_string(),
            options: vec!["rbind".into(), if readonly { "ro" } else { "rw" }.into()],
        }
    }

    /// The overlay lowerdirs, nearest first (empty for other kinds).
    pub fn lowerdirs(&self) -> Vec<&str> {
        self.options
            .iter()
            .filter_map(|o| o.strip_prefix("lowerdir="))
            .flat_map(|l| l.split(':'))
            .filter(|s| !s.is_empty())
            .collect()
    }

    fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    fn readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("path", "contains a NUL byte"))
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid("mount option", "contains a NUL byte"))
}

fn errno(what: String) -> Error {
    Error::io(what, std::io::Error::last_os_error())
}

/// Mounts `mounts` in order on `target` (which must exist).
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for m in mounts {
        match m.kind.as_str() {
            "overlay" => mount_overlay(m, target)?,
            "bind" => mount_bind(m, target)?,
            other => return Err(Error::Unsupported(format!("mount type {other:?}"))),
        }
    }
    Ok(())
}

/// Detaches whatever is mounted on `target`; not mounted is fine.
pub fn unmount(target: &Path) -> Result<()> {
    let t = cpath(target)?;
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
            return Err(Error::io(format!("unmounting {}", target.display()), e));
        }
    }
    Ok(())
}

fn mount_bind(m: &Mount, target: &Path) -> Result<()> {
    let src = cpath(Path::new(&m.source))?;
    let t = cpath(target)?;
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(errno(format!(
            "bind-mounting {} on {}",
            m.source,
            target.display()
        )));
    }
    if m.readonly() {
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        if unsafe {
            libc::mount(
                std::ptr::null(),
                t.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        } != 0
        {
            let err = errno(format!("making {} read-only", target.display()));
            let _ = unmount(target);
            return Err(err);
        }
    }
    Ok(())
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// The kernel's explanation of a failed fsconfig, read from the fs context fd.
fn fs_context_message(fd: &OwnedFd) -> String {
    let mut buf = [0u8; 512];
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n > 0 {
        String::from_utf8_lossy(&buf[..n as usize])
            .trim()
            .to_string()
    } else {
        String::new()
    }
}

fn mount_overlay(m: &Mount, target: &Path) -> Result<()> {
    let lowers = m.lowerdirs();
    if lowers.is_empty() {
        return Err(Error::invalid("overlay mount", "no lowerdir"));
    }
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        return mount_overlay_legacy(m, target);
    }
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    let set = |key: &str, value: &str| -> Result<bool> {
        let (k, v) = (cstr(key)?, cstr(value)?);
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        };
        if rc == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        let msg = fs_context_message(&fs);
        if key == "lowerdir+"
            && e.raw_os_error() == Some(libc::EINVAL)
            && msg.contains("Unknown parameter")
        {
            return Ok(false);
        }
        Err(Error::io(format!("overlay option {key}={value}: {msg}"), e))
    };
    for l in &lowers {
        if !set("lowerdir+", l)? {
            return mount_overlay_legacy(m, target);
        }
    }
    for key in ["upperdir", "workdir"] {
        if let Some(v) = m.option(key) {
            set(key, v)?;
        }
    }
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::io(
            format!(
                "creating overlay for {}: {}",
                target.display(),
                fs_context_message(&fs)
            ),
            e,
        ));
    }
    let attrs = if m.readonly() || m.option("upperdir").is_none() {
        MOUNT_ATTR_RDONLY
    } else {
        0
    };
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    if mnt < 0 {
        return Err(errno(format!("fsmount overlay for {}", target.display())));
    }
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let t = cpath(target)?;
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(errno(format!("attaching overlay on {}", target.display())));
    }
    Ok(())
}

fn mount_overlay_legacy(m: &Mount, target: &Path) -> Result<()> {
    let data: Vec<&str> = m
        .options
        .iter()
        .map(String::as_str)
        .filter(|o| *o != "ro" && *o != "rw")
        .collect();
    let data = data.join(",");
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    if data.len() >= page {
        return Err(Error::Unsupported(format!(
            "overlay options for {} layers exceed one page and this kernel lacks fsconfig lowerdir+ (linux 6.8+)",
            m.lowerdirs().len()
        )));
    }
    let t = cpath(target)?;
    let d = cstr(&data)?;
    let flags = if m.readonly() { libc::MS_RDONLY } else { 0 };
    let rc = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            t.as_ptr(),
            c"overlay".as_ptr(),
            flags,
            d.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(errno(format!("mounting overlay on {}", target.display())));
    }
    Ok(())
}
