//! The overlayfs driver: a committed snapshot holds only its layer's diff; mounts stack the parent chain.

use std::fs;
use std::path::PathBuf;

use super::{Info, Kind, Mount, Snapshots, Snapshotter, SnapshotterKind, Usage};
use crate::error::{Error, IoContext, Result};
use crate::unpack::Whiteouts;

pub struct Overlay {
    s: Snapshots,
}

impl Overlay {
    pub fn new(s: Snapshots) -> Overlay {
        Overlay { s }
    }

    fn lowerdirs(&self, chain: &[String]) -> Result<String> {
        let dirs: Result<Vec<String>> = chain
            .iter()
            .map(|k| Ok(self.s.fs_dir(k)?.display().to_string()))
            .collect();
        Ok(dirs?.join(":"))
    }
}

impl Snapshotter for Overlay {
    fn kind(&self) -> SnapshotterKind {
        SnapshotterKind::Overlayfs
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        if let Some(p) = parent {
            self.s.committed(p)?;
        }
        self.s.create(key, Kind::Active, parent, |d| {
            fs::create_dir(d.join("work")).ctx(|| "creating overlay workdir")
        })?;
        self.mounts(key)
    }

    /// A layer diff does not depend on its parent's content here, so the parent may still be unpacking: this is
    /// what lets a pull unpack all layers in parallel.
    fn prepare_diff(&self, key: &str, parent: Option<&str>) -> Result<(PathBuf, Whiteouts)> {
        self.s.create(key, Kind::Active, parent, |d| {
            fs::create_dir(d.join("work")).ctx(|| "creating overlay workdir")
        })?;
        self.apply_dir(key)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.s.create(key, Kind::View, parent, |_| Ok(()))?;
        self.mounts(key)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.s.commit(name, key)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let info = self.s.stat(key)?;
        let chain = self.s.chain(info.parent.as_deref())?;
        let own = self.s.dir(key)?;
        Ok(match (info.kind, chain.len()) {
            (Kind::Committed, _) => {
                return Err(Error::invalid(
                    "mounts",
                    format!("snapshot {key} is committed; prepare or view it"),
                ));
            }
            (Kind::Active, 0) => vec![Mount::bind(&own.join("fs"), false)],
            (Kind::Active, _) => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("lowerdir={}", self.lowerdirs(&chain)?),
                    format!("upperdir={}", own.join("fs").display()),
                    format!("workdir={}", own.join("work").display()),
                ],
            }],
            (Kind::View, 0) => vec![Mount::bind(&own.join("fs"), true)],
            (Kind::View, 1) => vec![Mount::bind(&self.s.fs_dir(&chain[0])?, true)],
            (Kind::View, _) => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!("lowerdir={}", self.lowerdirs(&chain)?), "ro".into()],
            }],
        })
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
        Ok((self.s.fs_dir(key)?, Whiteouts::Overlay))
    }
}
