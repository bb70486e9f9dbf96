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

    /// The parent need not be committed yet (layers are unpacked in parallel), but must be before mounting.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.s.create(key, Kind::Active, parent, |d| {
            fs::create_dir(d.join("work")).ctx(|| "creating overlay workdir")
        })?;
        match self.mounts(key) {
            // Some ancestor is still being unpacked: no mounts yet, ask again once it is committed.
            Err(Error::NotFound(_)) if parent.is_some() => Ok(vec![]),
            other => other,
        }
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
