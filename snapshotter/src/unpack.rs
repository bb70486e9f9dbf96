//! Applying a layer tar to a snapshot directory without ever writing outside it.
//!
//! Every path is resolved by us, relative to a directory fd of the snapshot root: the entry name is split into
//! components (absolute names and `..` are refused outright), the parent is opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)` so that a symlink inside the layer can never lead the walk out of the root (the kernel
//! answers EXDEV, which we report as a hostile layer), and the final component is always created fresh with
//! `O_EXCL | O_NOFOLLOW` after removing whatever was there, so nothing is ever written *through* an existing
//! symlink or hardlink. Hardlink targets go through the same checks. `tar::Entry::unpack_in` is never used.
//!
//! Whiteouts: for the overlay driver `.wh.name` becomes a 0/0 character device and `.wh..wh..opq` sets
//! `trusted.overlay.opaque=y` on its directory, which is what overlayfs reads; for the native driver (a full copy of
//! the parent) they are applied as deletions.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whiteouts {
    /// Keep whiteouts as overlayfs markers (char device 0/0, opaque xattr).
    Overlay,
    /// Delete what they hide: the snapshot is a full copy of its parent.
    Delete,
}

const WH_PREFIX: &[u8] = b".wh.";
const WH_OPAQUE: &[u8] = b".wh..wh..opq";

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

struct Unpacker<'a> {
    root: OwnedFd,
    layer: &'a str,
    whiteouts: Whiteouts,
    /// Paths this layer wrote, so an opaque marker in `Delete` mode spares them.
    created: HashSet<Vec<u8>>,
    dir_times: Vec<(Vec<Vec<u8>>, u64)>,
}

/// Unpacks the tar stream `reader` into `root`. The caller verifies digests; this only guarantees containment.
pub fn unpack<R: Read>(reader: R, root: &Path, whiteouts: Whiteouts, layer: &str) -> Result<()> {
    let root_fd = open_path(
        libc::AT_FDCWD,
        &cstring(root.as_os_str().as_bytes())?,
        libc::O_DIRECTORY,
    )
    .map_err(|e| Error::io(format!("opening snapshot dir {}", root.display()), e))?;
    let mut u = Unpacker {
        root: root_fd,
        layer,
        whiteouts,
        created: HashSet::new(),
        dir_times: vec![],
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| u.bad_tar(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.bad_tar(e))?;
        u.entry(&mut entry)?;
    }
    u.finish_dir_times()?;
    // Hand back the reader's tail (tar padding) to the caller's hashing reader.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| u.bad_tar(e))?;
    Ok(())
}

fn cstring(b: &[u8]) -> Result<CString> {
    CString::new(b).map_err(|_| Error::invalid("path", "contains a NUL byte"))
}

fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

fn open_path(dir: RawFd, path: &CStr, extra: i32) -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::openat(
            dir,
            path.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW | extra,
        )
    };
    if fd < 0 {
        Err(last_os_error())
    } else {
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// `openat2(dir, path, O_PATH|O_DIRECTORY, RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS)`.
fn open_beneath(dir: RawFd, path: &[u8]) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        Err(last_os_error())
    } else {
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Splits a tar path into components, refusing absolute paths and `..`.
fn components(raw: &[u8]) -> std::result::Result<Vec<Vec<u8>>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut v = vec![];
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path with '..'"),
            c => v.push(c.to_vec()),
        }
    }
    Ok(v)
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn proc_path(fd: RawFd, name: Option<&[u8]>) -> Result<CString> {
    let mut p = format!("/proc/self/fd/{fd}").into_bytes();
    if let Some(n) = name {
        p.push(b'/');
        p.extend_from_slice(n);
    }
    cstring(&p)
}

impl Unpacker<'_> {
    fn hostile(&self, path: &[u8], why: &str) -> Error {
        Error::HostileLayer {
            layer: self.layer.to_string(),
            detail: format!("entry {:?}: {why}", show(path)),
        }
    }

    /// Layers are unpacked on their own (in parallel, for overlayfs), so a link can only reach its own layer.
    fn cross_layer_link(&self, raw: &[u8], target: &[u8]) -> Error {
        Error::Unsupported(format!(
            "layer {}: hardlink {:?} points at {:?}, which is not in the same layer (hardlinks into lower layers)",
            self.layer,
            show(raw),
            show(target)
        ))
    }

    fn bad_tar(&self, e: io::Error) -> Error {
        Error::Io {
            context: format!("reading layer {}", self.layer),
            source: e,
        }
    }

    fn sys(&self, what: &str, path: &[u8], e: io::Error) -> Error {
        Error::io(format!("layer {}: {what} {:?}", self.layer, show(path)), e)
    }

    /// Opens (creating if asked) the directory `comps` below the root, never leaving it.
    fn dir(&self, comps: &[Vec<u8>], create: bool, entry: &[u8]) -> Result<OwnedFd> {
        let joined = if comps.is_empty() {
            b".".to_vec()
        } else {
            comps.join(&b'/')
        };
        match open_beneath(self.root.as_raw_fd(), &joined) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {}
            Err(e) => return Err(self.resolve_error(entry, e)),
        }
        let mut cur = open_beneath(self.root.as_raw_fd(), b".")
            .map_err(|e| self.sys("opening root for", entry, e))?;
        for c in comps {
            let name = cstring(c)?;
            match open_beneath(cur.as_raw_fd(), c) {
                Ok(fd) => cur = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
                        let e = last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(self.sys("creating parent of", entry, e));
                        }
                    }
                    cur = open_beneath(cur.as_raw_fd(), c)
                        .map_err(|e| self.resolve_error(entry, e))?;
                }
                Err(e) => return Err(self.resolve_error(entry, e)),
            }
        }
        Ok(cur)
    }

    fn resolve_error(&self, entry: &[u8], e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::EXDEV) | Some(libc::ELOOP) => self.hostile(
                entry,
                "its path goes through a symlink leading outside the layer",
            ),
            Some(libc::ENOTDIR) => Error::invalid(
                format!("layer {}", self.layer),
                format!("entry {:?}: a parent is not a directory", show(entry)),
            ),
            _ => self.sys("resolving", entry, e),
        }
    }

    /// Removes whatever is at `parent/name` (file, link, or directory tree); absent is fine.
    fn remove(&self, parent: &OwnedFd, name: &[u8], entry: &[u8]) -> Result<()> {
        let c = cstring(name)?;
        if unsafe { libc::unlinkat(parent.as_raw_fd(), c.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let e = last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(()),
            Some(libc::EISDIR) | Some(libc::EPERM) => {
                // std's remove_dir_all never follows symlinks inside the tree.
                let p = proc_path(parent.as_raw_fd(), Some(name))?;
                let p = Path::new(std::ffi::OsStr::from_bytes(p.as_bytes()));
                std::fs::remove_dir_all(p).map_err(|e| self.sys("replacing", entry, e))
            }
            _ => Err(self.sys("replacing", entry, e)),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let comps = components(&raw).map_err(|why| self.hostile(&raw, why))?;
        let kind = entry.header().entry_type();
        let Some((name, parents)) = comps.split_last() else {
            // "./": the root itself.
            if kind.is_dir() {
                let fd = open_beneath(self.root.as_raw_fd(), b".")
                    .map_err(|e| self.sys("opening", &raw, e))?;
                self.meta_by_path(&fd, None, entry, &raw, false)?;
            }
            return Ok(());
        };
        if name.starts_with(WH_PREFIX) {
            return self.whiteout(parents, name, &raw);
        }
        let parent = self.dir(parents, true, &raw)?;
        let cname = cstring(name)?;
        let pfd = parent.as_raw_fd();
        match kind {
            tar::EntryType::Directory => {
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                let exists = unsafe {
                    libc::fstatat(pfd, cname.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW)
                } == 0;
                if exists && (st.st_mode & libc::S_IFMT) != libc::S_IFDIR {
                    self.remove(&parent, name, &raw)?;
                }
                if (!exists || (st.st_mode & libc::S_IFMT) != libc::S_IFDIR)
                    && unsafe { libc::mkdirat(pfd, cname.as_ptr(), 0o700) } != 0
                {
                    return Err(self.sys("creating directory", &raw, last_os_error()));
                }
                let fd = open_beneath(pfd, name).map_err(|e| self.resolve_error(&raw, e))?;
                self.meta_by_path(&fd, None, entry, &raw, false)?;
                let mtime = entry.header().mtime().unwrap_or(0);
                self.dir_times.push((comps.clone(), mtime));
            }
            // The tar crate expands GNU sparse entries into their full contents.
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.remove(&parent, name, &raw)?;
                let fd = unsafe {
                    libc::openat(
                        pfd,
                        cname.as_ptr(),
                        libc::O_WRONLY
                            | libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                if fd < 0 {
                    return Err(self.sys("creating", &raw, last_os_error()));
                }
                let mut file = unsafe { File::from_raw_fd(fd) };
                io::copy(entry, &mut file).map_err(|e| self.bad_tar(e))?;
                self.meta_by_fd(&file, entry, &raw)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        Error::invalid(
                            format!("layer {}", self.layer),
                            format!("symlink {:?} without target", show(&raw)),
                        )
                    })?
                    .into_owned();
                self.remove(&parent, name, &raw)?;
                let t = cstring(&target)?;
                if unsafe { libc::symlinkat(t.as_ptr(), pfd, cname.as_ptr()) } != 0 {
                    return Err(self.sys("creating symlink", &raw, last_os_error()));
                }
                self.meta_by_path(&parent, Some(name), entry, &raw, true)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        Error::invalid(
                            format!("layer {}", self.layer),
                            format!("hardlink {:?} without target", show(&raw)),
                        )
                    })?
                    .into_owned();
                let tcomps = components(&target).map_err(|why| {
                    self.hostile(&raw, &format!("hardlink target {:?}: {why}", show(&target)))
                })?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(self.hostile(&raw, "hardlink to the layer root"));
                };
                let tparent = match self.dir(tparents, false, &raw) {
                    Err(Error::Io { source, .. })
                        if source.raw_os_error() == Some(libc::ENOENT) =>
                    {
                        return Err(self.cross_layer_link(&raw, &target));
                    }
                    other => other?,
                };
                let ctname = cstring(tname)?;
                self.remove(&parent, name, &raw)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, never what it points at.
                if unsafe {
                    libc::linkat(tparent.as_raw_fd(), ctname.as_ptr(), pfd, cname.as_ptr(), 0)
                } != 0
                {
                    let e = last_os_error();
                    if e.raw_os_error() == Some(libc::ENOENT) {
                        return Err(self.cross_layer_link(&raw, &target));
                    }
                    return Err(self.sys("creating hardlink", &raw, e));
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let fmt = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                self.remove(&parent, name, &raw)?;
                let dev = libc::makedev(major, minor);
                if unsafe { libc::mknodat(pfd, cname.as_ptr(), fmt | 0o600, dev) } != 0 {
                    return Err(self.sys("creating device node", &raw, last_os_error()));
                }
                self.meta_by_path(&parent, Some(name), entry, &raw, false)?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                return Err(Error::Unsupported(format!(
                    "layer {}: tar entry {:?} of type {other:?}",
                    self.layer,
                    show(&raw)
                )));
            }
        }
        self.created.insert(comps.join(&b'/'));
        Ok(())
    }

    fn whiteout(&mut self, parents: &[Vec<u8>], name: &[u8], raw: &[u8]) -> Result<()> {
        let parent = self.dir(parents, true, raw)?;
        if name == WH_OPAQUE {
            return match self.whiteouts {
                Whiteouts::Overlay => {
                    let p = proc_path(parent.as_raw_fd(), None)?;
                    let rc = unsafe {
                        libc::setxattr(
                            p.as_ptr(),
                            c"trusted.overlay.opaque".as_ptr(),
                            b"y".as_ptr().cast(),
                            1,
                            0,
                        )
                    };
                    if rc != 0 {
                        Err(self.sys("marking opaque", raw, last_os_error()))
                    } else {
                        Ok(())
                    }
                }
                Whiteouts::Delete => {
                    let prefix = parents.join(&b'/');
                    let p = proc_path(parent.as_raw_fd(), None)?;
                    let dir =
                        std::fs::read_dir(Path::new(std::ffi::OsStr::from_bytes(p.as_bytes())))
                            .map_err(|e| self.sys("listing", raw, e))?;
                    for child in dir {
                        let child = child.map_err(|e| self.sys("listing", raw, e))?;
                        let cname = child.file_name();
                        let mut full = prefix.clone();
                        if !full.is_empty() {
                            full.push(b'/');
                        }
                        full.extend_from_slice(cname.as_bytes());
                        if !self.created.contains(&full) {
                            self.remove(&parent, cname.as_bytes(), raw)?;
                        }
                    }
                    Ok(())
                }
            };
        }
        let hidden = &name[WH_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.hostile(raw, "malformed whiteout"));
        }
        self.remove(&parent, hidden, raw)?;
        if self.whiteouts == Whiteouts::Overlay {
            let c = cstring(hidden)?;
            if unsafe {
                libc::mknodat(
                    parent.as_raw_fd(),
                    c.as_ptr(),
                    libc::S_IFCHR,
                    libc::makedev(0, 0),
                )
            } != 0
            {
                return Err(self.sys("creating whiteout for", raw, last_os_error()));
            }
        }
        Ok(())
    }

    fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(CString, Vec<u8>)> {
        let mut v = vec![];
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if let Ok(k) = ext.key()
                    && let Some(name) = k.strip_prefix("SCHILY.xattr.")
                    && let Ok(c) = CString::new(name)
                {
                    v.push((c, ext.value_bytes().to_vec()));
                }
            }
        }
        v
    }

    /// Ownership, mode, xattrs and times of a regular file through its fd (chown first: it clears setuid).
    fn meta_by_fd<R: Read>(
        &self,
        file: &File,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<()> {
        let xattrs = Self::xattrs(entry);
        let h = entry.header();
        let (uid, gid, mode, mtime) = (
            h.uid().unwrap_or(0),
            h.gid().unwrap_or(0),
            h.mode().unwrap_or(0o644),
            h.mtime().unwrap_or(0),
        );
        let fd = file.as_raw_fd();
        if unsafe { libc::fchown(fd, uid as libc::uid_t, gid as libc::gid_t) } != 0 {
            return Err(self.sys("chown", raw, last_os_error()));
        }
        if unsafe { libc::fchmod(fd, (mode & 0o7777) as libc::mode_t) } != 0 {
            return Err(self.sys("chmod", raw, last_os_error()));
        }
        for (k, v) in &xattrs {
            if unsafe { libc::fsetxattr(fd, k.as_ptr(), v.as_ptr().cast(), v.len(), 0) } != 0 {
                self.xattr_error(raw, k)?;
            }
        }
        let ts = [timespec(mtime), timespec(mtime)];
        if unsafe { libc::futimens(fd, ts.as_ptr()) } != 0 {
            return Err(self.sys("setting times of", raw, last_os_error()));
        }
        Ok(())
    }

    fn xattr_error(&self, raw: &[u8], k: &CStr) -> Result<()> {
        let e = last_os_error();
        // A backing filesystem without xattr support (or a namespace we may not set) loses the attribute, as
        // containerd does; anything else is a real failure.
        match e.raw_os_error() {
            Some(libc::ENOTSUP) | Some(libc::EPERM) => {
                tracing::warn!(layer = self.layer, entry = %show(raw), xattr = ?k, "xattr not kept: {e}");
                Ok(())
            }
            _ => Err(self.sys("setting xattr on", raw, e)),
        }
    }

    /// Same as [`Self::meta_by_fd`] for things we must not open (symlinks, device nodes, the O_PATH dir fds):
    /// `name` is `None` for `dirfd` itself.
    fn meta_by_path<R: Read>(
        &self,
        dirfd: &OwnedFd,
        name: Option<&[u8]>,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        symlink: bool,
    ) -> Result<()> {
        let xattrs = Self::xattrs(entry);
        let h = entry.header();
        let (uid, gid, mode, mtime) = (
            h.uid().unwrap_or(0),
            h.gid().unwrap_or(0),
            h.mode().unwrap_or(0o755),
            h.mtime().unwrap_or(0),
        );
        let (fd, cname, flags) = match name {
            Some(n) => (dirfd.as_raw_fd(), cstring(n)?, libc::AT_SYMLINK_NOFOLLOW),
            None => (
                dirfd.as_raw_fd(),
                CString::default(),
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            ),
        };
        if unsafe {
            libc::fchownat(
                fd,
                cname.as_ptr(),
                uid as libc::uid_t,
                gid as libc::gid_t,
                flags,
            )
        } != 0
        {
            return Err(self.sys("chown", raw, last_os_error()));
        }
        let p = proc_path(dirfd.as_raw_fd(), name)?;
        if !symlink && unsafe { libc::chmod(p.as_ptr(), (mode & 0o7777) as libc::mode_t) } != 0 {
            return Err(self.sys("chmod", raw, last_os_error()));
        }
        for (k, v) in &xattrs {
            if unsafe { libc::lsetxattr(p.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) }
                != 0
            {
                self.xattr_error(raw, k)?;
            }
        }
        if name.is_some() {
            let ts = [timespec(mtime), timespec(mtime)];
            if unsafe {
                libc::utimensat(fd, cname.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
            } != 0
            {
                return Err(self.sys("setting times of", raw, last_os_error()));
            }
        }
        Ok(())
    }

    /// Directory mtimes last: creating their children moved them.
    fn finish_dir_times(&self) -> Result<()> {
        for (comps, mtime) in self.dir_times.iter().rev() {
            let raw = comps.join(&b'/');
            let Ok(fd) = open_beneath(self.root.as_raw_fd(), &raw) else {
                continue;
            };
            let ts = [timespec(*mtime), timespec(*mtime)];
            let p = proc_path(fd.as_raw_fd(), None)?;
            if unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) } != 0 {
                return Err(self.sys("setting times of", &raw, last_os_error()));
            }
        }
        Ok(())
    }
}

fn timespec(secs: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_testkit::{LayerBuilder, RawEntry};
    use std::os::unix::fs::MetadataExt;

    fn apply(dir: &Path, layer: LayerBuilder, wh: Whiteouts) -> Result<()> {
        unpack(layer.tar().unwrap().as_slice(), dir, wh, "test")
    }

    fn xattr(path: &Path, name: &CStr) -> Option<Vec<u8>> {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let n = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        (n >= 0).then(|| buf[..n as usize].to_vec())
    }

    #[test]
    fn overlay_whiteouts_become_char_devices_and_opaque_xattrs() {
        let d = tempfile::tempdir().unwrap();
        apply(
            d.path(),
            LayerBuilder::new()
                .whiteout("etc/gone")
                .opaque("var")
                .file("var/kept", "x"),
            Whiteouts::Overlay,
        )
        .unwrap();
        let m = std::fs::symlink_metadata(d.path().join("etc/gone")).unwrap();
        assert_eq!((m.mode() & libc::S_IFMT, m.rdev()), (libc::S_IFCHR, 0));
        assert_eq!(
            xattr(&d.path().join("var"), c"trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert!(d.path().join("var/kept").exists());
        assert!(!d.path().join("etc/.wh.gone").exists());
    }

    #[test]
    fn delete_mode_removes_what_whiteouts_hide() {
        let d = tempfile::tempdir().unwrap();
        let base = LayerBuilder::new()
            .file("a/x", "1")
            .file("a/y", "2")
            .file("b/z", "3")
            .dir("c/deep/er");
        apply(d.path(), base, Whiteouts::Delete).unwrap();
        apply(
            d.path(),
            LayerBuilder::new()
                .file("a/new", "n")
                .opaque("a")
                .whiteout("b/z")
                .whiteout("c"),
            Whiteouts::Delete,
        )
        .unwrap();
        let mut a: Vec<_> = std::fs::read_dir(d.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        a.sort();
        assert_eq!(
            a,
            vec![std::ffi::OsString::from("new")],
            "opaque keeps only this layer's entries"
        );
        assert!(!d.path().join("b/z").exists());
        assert!(!d.path().join("c").exists());
    }

    #[test]
    fn later_entries_replace_earlier_ones_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("target"), "safe").unwrap();
        let layer = LayerBuilder::new()
            .symlink("f", &outside.path().join("target").display().to_string())
            .raw(RawEntry::file("f", b"over"))
            .file("dir-then-file/x", "1")
            .raw(RawEntry::file("dir-then-file", b"file"))
            .file("file-then-dir", "1")
            .dir("file-then-dir");
        apply(d.path(), layer, Whiteouts::Overlay).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.path().join("target")).unwrap(),
            "safe"
        );
        assert_eq!(std::fs::read_to_string(d.path().join("f")).unwrap(), "over");
        assert_eq!(
            std::fs::read_to_string(d.path().join("dir-then-file")).unwrap(),
            "file"
        );
        assert!(d.path().join("file-then-dir").is_dir());
    }

    #[test]
    fn gnu_sparse_files_unpack_in_full() {
        let src = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(src.path().join("sparse")).unwrap();
        f.set_len(1 << 20).unwrap();
        std::os::unix::fs::FileExt::write_at(&f, b"end", (1 << 20) - 3).unwrap();
        let tarball = src.path().join("s.tar");
        let ok = std::process::Command::new("tar")
            .args(["--sparse", "--format=gnu", "-C"])
            .arg(src.path())
            .arg("-cf")
            .arg(&tarball)
            .arg("sparse")
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let d = tempfile::tempdir().unwrap();
        unpack(
            std::fs::File::open(&tarball).unwrap(),
            d.path(),
            Whiteouts::Overlay,
            "sparse",
        )
        .unwrap();
        let got = std::fs::read(d.path().join("sparse")).unwrap();
        assert_eq!(got.len(), 1 << 20);
        assert_eq!(&got[got.len() - 3..], b"end");
    }

    #[test]
    fn hardlink_to_a_missing_file_says_so() {
        let d = tempfile::tempdir().unwrap();
        let err = apply(
            d.path(),
            LayerBuilder::new().hardlink("b", "lower/a"),
            Whiteouts::Overlay,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("same layer"), "{err}");
    }

    #[test]
    fn malformed_whiteout_is_hostile() {
        let d = tempfile::tempdir().unwrap();
        let err = apply(
            d.path(),
            LayerBuilder::new().raw(RawEntry::file("a/.wh...", b"")),
            Whiteouts::Delete,
        )
        .unwrap_err();
        assert!(matches!(err, Error::HostileLayer { .. }), "{err}");
    }

    #[test]
    fn components_reject_escapes() {
        assert_eq!(
            components(b"./a//b/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"a/../../x").is_err());
        assert!(components(b"..").is_err());
    }
}
