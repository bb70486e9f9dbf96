//! Pull throughput (not a pass/fail test): `cargo test --release -p berth-snapshotter --test bench -- --ignored --nocapture`.

mod common;

use berth_snapshotter::SnapshotterKind;
use berth_testkit::{Compression, Format, ImageBuilder, LayerBuilder, Pusher, Registry};
use common::{Env, r};

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_throughput() {
    let reg = Registry::start().unwrap();
    let mut b = ImageBuilder::new(Format::Oci);
    let mut total = 0u64;
    for i in 0..5u64 {
        let mut layer = LayerBuilder::new();
        for f in 0..8u64 {
            layer = layer.file(&format!("l{i}/f{f}"), noise(i * 100 + f + 1, 5 << 20));
        }
        let built = layer.build(Compression::Gzip).unwrap();
        total += built.size();
        b = b.layer(built);
    }
    let img = b.build().unwrap();
    Pusher::new(&reg).push_image("bench", "v1", &img).unwrap();
    for kind in [SnapshotterKind::Overlayfs, SnapshotterKind::Native] {
        let env = Env::new(kind).await;
        let t = std::time::Instant::now();
        env.store
            .pull(&r(&format!("{}/bench:v1", reg.host())), None, |_| {})
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{kind:?}: cold pull of {} MB in {secs:.2} s = {:.1} MB/s",
            total >> 20,
            total as f64 / 1e6 / secs
        );
    }
}
