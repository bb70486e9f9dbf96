#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_snapshotter::{ImageStore, Reference, RegistryConfig, SnapshotterKind};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: ImageStore,
}

impl Env {
    pub async fn with_config(kind: SnapshotterKind, config: RegistryConfig) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("berth-snap-test-")
            .tempdir()
            .unwrap();
        let store = open_with(dir.path(), kind, config).await;
        Env { dir, store }
    }

    pub async fn new(kind: SnapshotterKind) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("berth-snap-test-")
            .tempdir()
            .unwrap();
        let store = open(dir.path(), kind).await;
        Env { dir, store }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Committed layer snapshot dirs on disk.
    pub fn snapshot_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".driver")
            .collect();
        v.sort();
        v
    }

    pub fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join("content/blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    pub fn layer_fs(&self, chain_id: &str) -> PathBuf {
        self.root()
            .join("snapshots")
            .join(chain_id.trim_start_matches("sha256:"))
            .join("fs")
    }
}

pub async fn open(dir: &Path, kind: SnapshotterKind) -> ImageStore {
    open_with(dir, kind, RegistryConfig::default()).await
}

pub async fn open_with(dir: &Path, kind: SnapshotterKind, config: RegistryConfig) -> ImageStore {
    let db = Arc::new(redb::Database::create(dir.join("meta.db")).unwrap());
    ImageStore::open(&dir.join("root"), config, kind, db)
        .await
        .unwrap()
}

pub fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// Runs `f` on a thread in a private mount namespace, so mounts can never leak to the host.
pub fn in_mount_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(
                unsafe { libc::unshare(libc::CLONE_NEWNS) },
                0,
                "unshare: {}",
                std::io::Error::last_os_error()
            );
            let rc = unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            };
            assert_eq!(rc, 0, "make / private: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    })
}

/// Unmounts on drop, even when the test panics.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = berth_snapshotter::unmount(&self.0);
    }
}
