//! Layers that try to write outside their snapshot must fail the pull and leave the host untouched.

mod common;

use berth_snapshotter::{Error, SnapshotterKind};
use berth_testkit::{Compression, Format, ImageBuilder, LayerBuilder, Pusher, RawEntry, Registry};
use common::{Env, r};

struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    fn new() -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("canary-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("canary"), "untouched").unwrap();
        Canary { dir }
    }
    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }
    fn assert_untouched(&self) {
        assert_eq!(
            std::fs::read_to_string(self.dir.path().join("canary")).unwrap(),
            "untouched"
        );
        let names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("canary")],
            "something was written next to the canary"
        );
    }
}

async fn pull_hostile(kind: SnapshotterKind, layer: LayerBuilder) -> Error {
    let reg = Registry::start().unwrap();
    let img = ImageBuilder::new(Format::Oci)
        .layer(layer.build(Compression::Gzip).unwrap())
        .build()
        .unwrap();
    Pusher::new(&reg).push_image("evil", "v1", &img).unwrap();
    let env = Env::new(kind).await;
    let err = env
        .store
        .pull(&r(&format!("{}/evil:v1", reg.host())), None, |_| {})
        .await
        .unwrap_err();
    assert!(env.store.list().unwrap().is_empty());
    assert!(env.snapshot_dirs().is_empty(), "{:?}", env.snapshot_dirs());
    err
}

fn up(n: usize) -> String {
    "../".repeat(n)
}

async fn check_all(kind: SnapshotterKind) {
    let c = Canary::new();
    let cases: Vec<(&str, LayerBuilder)> = vec![
        (
            "traversal",
            LayerBuilder::new().file("ok", "1").raw(RawEntry::file(
                &format!("{}{}/escaped", up(12), c.path().trim_start_matches('/')),
                b"x",
            )),
        ),
        (
            "absolute path",
            LayerBuilder::new().raw(RawEntry::file(&format!("{}/escaped", c.path()), b"x")),
        ),
        (
            "absolute canary overwrite",
            LayerBuilder::new().raw(RawEntry::file(&format!("{}/canary", c.path()), b"pwned")),
        ),
        (
            "symlink escape (absolute)",
            LayerBuilder::new()
                .symlink("evil", &c.path())
                .raw(RawEntry::file("evil/canary", b"pwned")),
        ),
        (
            "symlink escape (relative)",
            LayerBuilder::new()
                .symlink(
                    "evil",
                    &format!("{}{}", up(12), c.path().trim_start_matches('/')),
                )
                .raw(RawEntry::file("evil/escaped", b"x")),
        ),
        (
            "symlink escape via a symlinked dir",
            LayerBuilder::new()
                .dir("d")
                .symlink("d/up", "../..")
                .raw(RawEntry::file("d/up/escaped", b"x")),
        ),
        (
            "hardlink escape",
            LayerBuilder::new().raw(RawEntry::hardlink(
                "h",
                &format!("{}{}/canary", up(12), c.path().trim_start_matches('/')),
            )),
        ),
        (
            "hardlink absolute",
            LayerBuilder::new().raw(RawEntry::hardlink("h", &format!("{}/canary", c.path()))),
        ),
        (
            "hardlink through symlink",
            LayerBuilder::new()
                .symlink("evil", &c.path())
                .raw(RawEntry::hardlink("h", "evil/canary")),
        ),
    ];
    for (what, layer) in cases {
        let err = pull_hostile(kind, layer).await;
        assert!(matches!(err, Error::HostileLayer { .. }), "{what}: {err}");
        c.assert_untouched();
    }

    // Not hostile: a symlink pointing anywhere is fine as long as nothing is written through it, and a later
    // regular file replaces the symlink instead of following it.
    let reg = Registry::start().unwrap();
    let layer = LayerBuilder::new()
        .symlink("link", &format!("{}/canary", c.path()))
        .raw(RawEntry::file("link", b"replaced"))
        .symlink("abs", "/etc/passwd")
        .build(Compression::Gzip)
        .unwrap();
    let img = ImageBuilder::new(Format::Oci).layer(layer).build().unwrap();
    Pusher::new(&reg).push_image("benign", "v1", &img).unwrap();
    let env = Env::new(kind).await;
    let got = env
        .store
        .pull(&r(&format!("{}/benign:v1", reg.host())), None, |_| {})
        .await
        .unwrap();
    let fs = env.layer_fs(&got.layers[0].chain_id);
    assert_eq!(
        std::fs::read_to_string(fs.join("link")).unwrap(),
        "replaced"
    );
    assert_eq!(
        std::fs::read_link(fs.join("abs")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    c.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_layers_are_rejected_overlay() {
    check_all(SnapshotterKind::Overlayfs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_layers_are_rejected_native() {
    check_all(SnapshotterKind::Native).await;
}
