//! The native driver: every active snapshot is a full copy of its parent. Costs disk, needs nothing from the
//! backing filesystem but what `cp -a` needs, and its rootfs is a plain bind mount.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Info, Kind, Mount, Snapshots, Snapshotter, SnapshotterKind, Usage};
use crate::error::{Error, Result};
use crate::unpack::Whiteouts;

pub struct Native {
    s: Snapshots,
}

impl Native {
    pub fn new(s: Snapshots) -> Native {
        Native { s }
    }
}

/// `cp -a --reflink=auto src/. dst/`: keeps owners, modes, xattrs, hardlinks, devices and times; shares extents
/// where the filesystem can.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(format!("{}/.", src.display()))
        .arg(format!("{}/", dst.display()))
        .output()
        .map_err(|e| Error::io("running cp", e))?;
    if !out.status.success() {
        return Err(Error::io(
            format!(
                "copying {} to {}: {}",
                src.display(),
                dst.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            std::io::Error::other("cp failed"),
        ));
    }
    Ok(())
}

impl Snapshotter for Native {
    fn kind(&self) -> SnapshotterKind {
        SnapshotterKind::Native
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let parent_fs = match parent {
            Some(p) => {
                self.s.committed(p)?;
                Some(self.s.fs_dir(p)?)
            }
            None => None,
        };
        self.s
            .create(key, Kind::Active, parent, |d| match &parent_fs {
                Some(src) => copy_tree(src, &d.join("fs")),
                None => Ok(()),
            })?;
        self.mounts(key)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        if let Some(p) = parent {
            self.s.stat(p)?;
        }
        self.s.create(key, Kind::View, parent, |_| Ok(()))?;
        self.mounts(key)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.s.commit(name, key)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let info = self.s.stat(key)?;
        match (info.kind, &info.parent) {
            (Kind::Active, _) => Ok(vec![Mount::bind(&self.s.fs_dir(key)?, false)]),
            (Kind::View, Some(p)) => Ok(vec![Mount::bind(&self.s.fs_dir(p)?, true)]),
            (Kind::View, None) => Ok(vec![Mount::bind(&self.s.fs_dir(key)?, true)]),
            (Kind::Committed, _) => Err(Error::invalid(
                "mounts",
                format!("snapshot {key} is committed; prepare or view it"),
            )),
        }
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.s.remove(key)
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        self.s.usage(key)
    }

    fn stat(&self, key: &str) -> Result<Info> {
        self.s.stat(key)
    }

    fn list(&self) -> Result<Vec<Info>> {
        self.s.list()
    }

    fn apply_dir(&self, key: &str) -> Result<(PathBuf, Whiteouts)> {
        Ok((self.s.fs_dir(key)?, Whiteouts::Delete))
    }
}
