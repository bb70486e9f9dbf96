//! Snapshots: the directories a root filesystem is stacked from.
//!
//! The model is containerd's. A snapshot is either **committed** (read-only, can be a parent), **active**
//! (writable, made by [`Snapshotter::prepare`] on top of a committed parent) or a **view** (read-only, made by
//! [`Snapshotter::view`]). Unpacking an image layer is: `prepare(tmp, parent)`, apply the layer's diff into
//! [`Snapshotter::apply_dir`], `commit(chain_id, tmp)`. A container's root filesystem is `prepare(ctr-<id>,
//! top_layer)` and the returned [`Mount`]s. A snapshot can only be removed when no other snapshot names it as
//! parent; the image store's GC removes committed layer snapshots no image or container needs.
//!
//! On disk each snapshot is `snapshots/<id>/` holding `fs/` (the content: a layer's diff for overlayfs, a full tree
//! for native), `work/` (overlayfs workdir of active snapshots) and `info.json`. `<id>` is the key with a leading
//! `sha256:` dropped. New snapshots are built under `snapshots/.new-*` and renamed into place, so a crash leaves
//! only `.new-*` directories, which [`Snapshots::clear_orphans`] removes at start-up.

mod mount;
mod native;
mod overlay;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use mount::{Mount, mount_all, unmount};
pub use native::Native;
pub use overlay::Overlay;

use crate::error::{Error, IoContext, Result};
use crate::unpack::Whiteouts;

/// Which driver an image store uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotterKind {
    /// Layers stacked with overlayfs; each layer stored once.
    #[default]
    Overlayfs,
    /// Every snapshot a full copy of its parent plus its diff, for filesystems where overlayfs cannot stack.
    Native,
}

impl std::str::FromStr for SnapshotterKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "overlayfs" | "overlay" => Ok(SnapshotterKind::Overlayfs),
            "native" => Ok(SnapshotterKind::Native),
            other => Err(Error::Unsupported(format!(
                "snapshotter {other:?} (use overlayfs or native)"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Active,
    View,
    Committed,
}

/// What [`Snapshotter::stat`] tells about a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub key: String,
    pub kind: Kind,
    pub parent: Option<String>,
}

/// Disk use: bytes allocated (st_blocks * 512, hardlinks counted once) and inodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.bytes += o.bytes;
        self.inodes += o.inodes;
    }
}

/// The snapshot driver interface. Keys are `[A-Za-z0-9_.-]` (optionally `sha256:`-prefixed), at most 128 bytes.
pub trait Snapshotter: Send + Sync {
    fn kind(&self) -> SnapshotterKind;
    /// Creates an active (writable) snapshot `key` on top of committed `parent` and returns how to mount it.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// Creates a read-only view of `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// Turns active snapshot `key` into committed snapshot `name`; `key` is gone afterwards.
    fn commit(&self, name: &str, key: &str) -> Result<()>;
    /// The mounts of an active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Removes a snapshot nobody builds on.
    fn remove(&self, key: &str) -> Result<()>;
    /// Space used by this snapshot's own directory (for overlayfs: the diff, not the parents).
    fn usage(&self, key: &str) -> Result<Usage>;
    fn stat(&self, key: &str) -> Result<Info>;
    fn list(&self) -> Result<Vec<Info>>;
    /// Where a layer diff is written into active `key` without mounting anything, and how to write its whiteouts.
    fn apply_dir(&self, key: &str) -> Result<(PathBuf, Whiteouts)>;
    /// Creates active `key` to receive a layer diff and returns [`Snapshotter::apply_dir`] of it. Drivers whose
    /// diffs do not depend on the parent's content (overlayfs) accept a parent that is not committed yet.
    fn prepare_diff(&self, key: &str, parent: Option<&str>) -> Result<(PathBuf, Whiteouts)> {
        self.prepare(key, parent)?;
        self.apply_dir(key)
    }
}

/// Opens the driver of `kind` over `root` (the `snapshots/` dir).
///
/// The drivers' committed snapshots mean different things (a diff vs. a full tree), so a root remembers its
/// driver in `.driver` and refuses to be opened with the other one.
pub fn open(kind: SnapshotterKind, root: &Path) -> Result<Box<dyn Snapshotter>> {
    let s = Snapshots::open(root)?;
    let name = match kind {
        SnapshotterKind::Overlayfs => "overlayfs",
        SnapshotterKind::Native => "native",
    };
    let marker = root.join(".driver");
    match fs::read_to_string(&marker) {
        Ok(existing) if existing.trim() == name => {}
        Ok(existing) => {
            return Err(Error::Unsupported(format!(
                "{} holds {} snapshots; open it with that snapshotter, or use another root for {name}",
                root.display(),
                existing.trim()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::write(&marker, format!("{name}\n"))
                .ctx(|| format!("writing {}", marker.display()))?;
        }
        Err(e) => return Err(Error::io(format!("reading {}", marker.display()), e)),
    }
    Ok(match kind {
        SnapshotterKind::Overlayfs => Box::new(Overlay::new(s)),
        SnapshotterKind::Native => Box::new(Native::new(s)),
    })
}

/// Directory bookkeeping shared by both drivers.
pub struct Snapshots {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct InfoFile {
    kind: Kind,
    parent: Option<String>,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots> {
        fs::create_dir_all(root).ctx(|| format!("creating {}", root.display()))?;
        Ok(Snapshots {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `key`, after checking the key cannot name anything outside `root`.
    pub fn dir(&self, key: &str) -> Result<PathBuf> {
        let id = key.strip_prefix("sha256:").unwrap_or(key);
        let ok = !id.is_empty()
            && id.len() <= 128
            && !id.starts_with('.')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(Error::invalid(
                "snapshot key",
                format!("{key:?} must be [A-Za-z0-9_.-], at most 128 bytes"),
            ));
        }
        Ok(self.root.join(id))
    }

    pub fn fs_dir(&self, key: &str) -> Result<PathBuf> {
        Ok(self.dir(key)?.join("fs"))
    }

    pub fn stat(&self, key: &str) -> Result<Info> {
        let p = self.dir(key)?.join("info.json");
        let bytes = fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(format!("snapshot {key}")),
            _ => Error::io(format!("reading {}", p.display()), e),
        })?;
        let f: InfoFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(p.display().to_string(), e))?;
        Ok(Info {
            key: key.to_string(),
            kind: f.kind,
            parent: f.parent,
        })
    }

    /// Fails unless `key` exists and is committed (a valid parent).
    pub fn committed(&self, key: &str) -> Result<()> {
        if self.stat(key)?.kind != Kind::Committed {
            return Err(Error::invalid(
                "parent",
                format!("snapshot {key} is not committed"),
            ));
        }
        Ok(())
    }

    /// Builds a new snapshot dir atomically: `fill` gets the staging dir (with `fs/` made), then it is renamed.
    pub fn create(
        &self,
        key: &str,
        kind: Kind,
        parent: Option<&str>,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let dst = self.dir(key)?;
        if let Some(p) = parent {
            self.dir(p)?;
        }
        if dst.exists() {
            return Err(Error::AlreadyExists(format!("snapshot {key}")));
        }
        let staging = self
            .root
            .join(format!(".new-{}", crate::content::unique_suffix()));
        let result = (|| {
            fs::create_dir(&staging).ctx(|| format!("creating {}", staging.display()))?;
            fs::create_dir(staging.join("fs"))
                .ctx(|| format!("creating {}/fs", staging.display()))?;
            fill(&staging)?;
            let info = serde_json::to_vec(&InfoFile {
                kind,
                parent: parent.map(str::to_string),
            })
            .map_err(|e| Error::invalid("snapshot info", e))?;
            fs::write(staging.join("info.json"), info).ctx(|| "writing snapshot info")?;
            fs::rename(&staging, &dst).map_err(|e| match e.raw_os_error() {
                Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => {
                    Error::AlreadyExists(format!("snapshot {key}"))
                }
                _ => Error::io(format!("renaming snapshot into {}", dst.display()), e),
            })
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }

    /// Renames active `key` to committed `name`, dropping its overlay workdir.
    pub fn commit(&self, name: &str, key: &str) -> Result<()> {
        let info = self.stat(key)?;
        if info.kind != Kind::Active {
            return Err(Error::invalid(
                "commit",
                format!("snapshot {key} is not active"),
            ));
        }
        let src = self.dir(key)?;
        let dst = self.dir(name)?;
        if dst.exists() {
            return Err(Error::AlreadyExists(format!("snapshot {name}")));
        }
        let work = src.join("work");
        if work.exists() {
            fs::remove_dir_all(&work).ctx(|| format!("removing {}", work.display()))?;
        }
        let bytes = serde_json::to_vec(&InfoFile {
            kind: Kind::Committed,
            parent: info.parent,
        })
        .map_err(|e| Error::invalid("snapshot info", e))?;
        let tmp = src.join("info.json.tmp");
        fs::write(&tmp, bytes).ctx(|| "writing snapshot info")?;
        fs::rename(&tmp, src.join("info.json")).ctx(|| "writing snapshot info")?;
        fs::rename(&src, &dst).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => {
                Error::AlreadyExists(format!("snapshot {name}"))
            }
            _ => Error::io(format!("committing {key} as {name}"), e),
        })
    }

    pub fn list(&self) -> Result<Vec<Info>> {
        let mut v = vec![];
        for e in fs::read_dir(&self.root).ctx(|| format!("listing {}", self.root.display()))? {
            let e = e.ctx(|| "listing snapshots")?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let key = if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                format!("sha256:{name}")
            } else {
                name
            };
            match self.stat(&key) {
                Ok(i) => v.push(i),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(v)
    }

    /// The chain of committed parents of `parent`, nearest first.
    pub fn chain(&self, parent: Option<&str>) -> Result<Vec<String>> {
        let mut v = vec![];
        let mut cur = parent.map(str::to_string);
        while let Some(k) = cur {
            if v.len() > 4096 {
                return Err(Error::invalid("snapshot chain", "too deep or cyclic"));
            }
            let info = self.stat(&k)?;
            v.push(k);
            cur = info.parent;
        }
        Ok(v)
    }

    /// Removes `key` unless another snapshot builds on it.
    pub fn remove(&self, key: &str) -> Result<()> {
        self.stat(key)?;
        if let Some(child) = self
            .list()?
            .into_iter()
            .find(|i| i.parent.as_deref() == Some(key))
        {
            return Err(Error::InUse(format!(
                "snapshot {key} is the parent of {}",
                child.key
            )));
        }
        self.remove_unchecked(key)
    }

    pub fn remove_unchecked(&self, key: &str) -> Result<()> {
        let dir = self.dir(key)?;
        // Rename first so a crash mid-delete leaves a `.new-` orphan, never a half-deleted visible snapshot.
        let trash = self
            .root
            .join(format!(".new-rm-{}", crate::content::unique_suffix()));
        match fs::rename(&dir, &trash) {
            Ok(()) => fs::remove_dir_all(&trash).ctx(|| format!("removing {}", trash.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
        }
    }

    /// Removes staging and trash dirs left by a crash. Only call when nothing else works on this root.
    pub fn clear_orphans(&self) -> Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(&self.root).ctx(|| format!("listing {}", self.root.display()))? {
            let e = e.ctx(|| "listing snapshots")?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let p = e.path();
            if name.starts_with(".new-")
                || (!name.starts_with('.') && !p.join("info.json").exists())
            {
                fs::remove_dir_all(&p).ctx(|| format!("removing orphan {}", p.display()))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Usage of one snapshot dir. Committed snapshots never change, so theirs is computed once and kept in
    /// `usage.json`: ImageFsInfo is polled by the kubelet, and walking every layer each time would not scale.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let info = self.stat(key)?;
        let dir = self.dir(key)?;
        let cache = dir.join("usage.json");
        if info.kind == Kind::Committed
            && let Ok(bytes) = fs::read(&cache)
            && let Ok(u) = serde_json::from_slice::<Usage>(&bytes)
        {
            return Ok(u);
        }
        let u = dir_usage(&dir)?;
        if info.kind == Kind::Committed
            && let Ok(bytes) = serde_json::to_vec(&u)
        {
            let tmp = dir.join(format!(".usage-{}", crate::content::unique_suffix()));
            if fs::write(&tmp, bytes)
                .and_then(|_| fs::rename(&tmp, &cache))
                .is_err()
            {
                let _ = fs::remove_file(&tmp);
            }
        }
        Ok(u)
    }
}

/// Usage of a tree, not following symlinks, counting each hardlinked inode once.
pub fn dir_usage(root: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut u = Usage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("stat {}", p.display()), e)),
        };
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        u.bytes += md.blocks() * 512;
        u.inodes += 1;
        if md.is_dir() {
            // Trees may shrink while we walk them (GC, a container deleting files): gone is not an error.
            let entries = match fs::read_dir(&p) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("listing {}", p.display()), e)),
            };
            for e in entries {
                match e {
                    Ok(e) => stack.push(e.path()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("listing {}", p.display()), e)),
                }
            }
        }
    }
    Ok(u)
}
