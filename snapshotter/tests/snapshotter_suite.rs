//! One conformance suite, run against every snapshot driver (after containerd's SnapshotterSuite).

mod common;

use std::path::{Path, PathBuf};

use berth_snapshotter::snapshot::{self, Kind, Snapshotter};
use berth_snapshotter::{Error, SnapshotterKind, mount};
use common::{MountGuard, in_mount_ns};

struct Fixture {
    dir: tempfile::TempDir,
    sn: Box<dyn Snapshotter>,
}

impl Fixture {
    fn new(kind: SnapshotterKind) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("berth-suite-")
            .tempdir()
            .unwrap();
        let sn = snapshot::open(kind, &dir.path().join("snapshots")).unwrap();
        Fixture { dir, sn }
    }

    fn target(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("mnt").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Prepares `key` on `parent`, lets `f` write into the mounted tree, commits it as `name`.
    fn layer(&self, name: &str, parent: Option<&str>, f: impl FnOnce(&Path)) {
        let key = format!("{name}-active");
        let mounts = self.sn.prepare(&key, parent).unwrap();
        let t = self.target(&key);
        {
            mount(&mounts, &t).unwrap();
            let _g = MountGuard(t.clone());
            f(&t);
        }
        self.sn.commit(name, &key).unwrap();
    }
}

fn prepare_write_commit_view(kind: SnapshotterKind) {
    let fx = Fixture::new(kind);
    in_mount_ns(|| {
        fx.layer("base", None, |t| {
            std::fs::write(t.join("a"), "1").unwrap();
            std::fs::create_dir(t.join("d")).unwrap();
            std::fs::write(t.join("d/b"), "2").unwrap();
        });
        let v = fx.sn.view("v", Some("base")).unwrap();
        let t = fx.target("v");
        mount(&v, &t).unwrap();
        let _g = MountGuard(t.clone());
        assert_eq!(std::fs::read_to_string(t.join("d/b")).unwrap(), "2");
        let err = std::fs::write(t.join("x"), "no").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "views are read-only");
    });
    let info = fx.sn.stat("base").unwrap();
    assert_eq!((info.kind, info.parent), (Kind::Committed, None));
    assert_eq!(fx.sn.stat("v").unwrap().kind, Kind::View);
}

fn children_see_parents_and_do_not_change_them(kind: SnapshotterKind) {
    let fx = Fixture::new(kind);
    in_mount_ns(|| {
        fx.layer("l1", None, |t| {
            std::fs::write(t.join("keep"), "l1").unwrap()
        });
        fx.layer("l2", Some("l1"), |t| {
            assert_eq!(std::fs::read_to_string(t.join("keep")).unwrap(), "l1");
            std::fs::write(t.join("keep"), "l2").unwrap();
            std::fs::write(t.join("gone"), "x").unwrap();
        });
        fx.layer("l3", Some("l2"), |t| {
            std::fs::remove_file(t.join("gone")).unwrap()
        });
        let m = fx.sn.prepare("c", Some("l3")).unwrap();
        let t = fx.target("c");
        mount(&m, &t).unwrap();
        let _g = MountGuard(t.clone());
        assert_eq!(std::fs::read_to_string(t.join("keep")).unwrap(), "l2");
        assert!(
            !t.join("gone").exists(),
            "a deletion in a layer must hide the lower file"
        );
        std::fs::write(t.join("keep"), "c").unwrap();
    });
    in_mount_ns(|| {
        let v = fx.sn.view("v1", Some("l1")).unwrap();
        let t = fx.target("v1");
        mount(&v, &t).unwrap();
        let _g = MountGuard(t.clone());
        assert_eq!(std::fs::read_to_string(t.join("keep")).unwrap(), "l1");
    });
    assert_eq!(fx.sn.stat("l3").unwrap().parent.as_deref(), Some("l2"));
}

fn key_rules_and_errors(kind: SnapshotterKind) {
    let fx = Fixture::new(kind);
    fx.sn.prepare("a", None).unwrap();
    assert!(matches!(
        fx.sn.prepare("a", None),
        Err(Error::AlreadyExists(_))
    ));
    assert!(fx.sn.prepare("../evil", None).is_err());
    assert!(fx.sn.prepare("a/b", None).is_err());
    assert!(fx.sn.prepare(".hidden", None).is_err());
    assert!(matches!(
        fx.sn.prepare("b", Some("missing")),
        Err(Error::NotFound(_))
    ));
    assert!(
        fx.sn.prepare("b", Some("a")).is_err(),
        "an active snapshot cannot be a parent"
    );
    assert!(matches!(fx.sn.stat("nope"), Err(Error::NotFound(_))));
    assert!(matches!(fx.sn.remove("nope"), Err(Error::NotFound(_))));
    fx.sn.commit("a-done", "a").unwrap();
    assert!(
        fx.sn.commit("again", "a-done").is_err(),
        "committed snapshots cannot be committed again"
    );
    assert!(
        fx.sn.mounts("a-done").is_err(),
        "committed snapshots are not mountable"
    );
    fx.sn.prepare("child", Some("a-done")).unwrap();
    assert!(matches!(fx.sn.remove("a-done"), Err(Error::InUse(_))));
    fx.sn.remove("child").unwrap();
    fx.sn.remove("a-done").unwrap();
    assert!(fx.sn.list().unwrap().is_empty());
}

fn usage_counts_own_data(kind: SnapshotterKind) {
    let fx = Fixture::new(kind);
    in_mount_ns(|| {
        fx.layer("u", None, |t| {
            std::fs::write(t.join("f"), vec![1u8; 1 << 20]).unwrap()
        });
    });
    let u = fx.sn.usage("u").unwrap();
    assert!(u.bytes >= 1 << 20, "{u:?}");
    assert!(u.inodes >= 2);
}

fn deep_chain_mounts(kind: SnapshotterKind) {
    let fx = Fixture::new(kind);
    // 128 layers is what overflows mount(2)'s one-page options for overlayfs; native mounts are plain binds, and
    // each of its snapshots is a full copy, so a shorter chain tests the same thing there in a tenth of the time.
    let depth = if kind == SnapshotterKind::Overlayfs {
        128
    } else {
        32
    };
    let dir = &fx;
    // Build the chain through apply_dir (as unpacking does) to keep it fast.
    let mut parent: Option<String> = None;
    for i in 0..depth {
        let key = format!("tmp-{i}");
        dir.sn.prepare(&key, parent.as_deref()).unwrap();
        let (d, _) = dir.sn.apply_dir(&key).unwrap();
        std::fs::write(d.join(format!("f{i}")), i.to_string()).unwrap();
        let name = format!("layer-{i:03}-{}", "x".repeat(40));
        dir.sn.commit(&name, &key).unwrap();
        parent = Some(name);
    }
    in_mount_ns(|| {
        let m = fx.sn.prepare("top", parent.as_deref()).unwrap();
        let t = fx.target("top");
        mount(&m, &t).unwrap();
        let _g = MountGuard(t.clone());
        assert_eq!(std::fs::read_to_string(t.join("f0")).unwrap(), "0");
        assert_eq!(
            std::fs::read_to_string(t.join(format!("f{}", depth - 1))).unwrap(),
            (depth - 1).to_string()
        );
    });
}

macro_rules! suite {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;
            #[test]
            fn prepare_write_commit_view() {
                super::prepare_write_commit_view($kind);
            }
            #[test]
            fn children_see_parents_and_do_not_change_them() {
                super::children_see_parents_and_do_not_change_them($kind);
            }
            #[test]
            fn key_rules_and_errors() {
                super::key_rules_and_errors($kind);
            }
            #[test]
            fn usage_counts_own_data() {
                super::usage_counts_own_data($kind);
            }
            #[test]
            fn deep_chain_mounts() {
                super::deep_chain_mounts($kind);
            }
        }
    };
}

suite!(overlayfs, SnapshotterKind::Overlayfs);
suite!(native, SnapshotterKind::Native);
