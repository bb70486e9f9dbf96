//! Cold pull of a generated multi-layer image from a local registry: seconds and MB/s per runtime.

use std::time::Instant;

use anyhow::Result;
use berth_cri::api::{ImageSpec, PullImageRequest};
use berth_testkit::{Compression, Format, ImageBuilder, LayerBuilder, Pusher, Registry};

use crate::target::{Target, containerd_installed};
use crate::{Stats, berth_bin};

/// Layers of semi-compressible data (6 bits of entropy a byte, like binaries), so gzip does real work both ways.
fn generated_image(total_mb: usize, layers: usize) -> Result<berth_testkit::Image> {
    let per_layer = total_mb * (1 << 20) / layers;
    let mut builder = ImageBuilder::new(Format::Oci).layers(berth_testkit::busybox_base_layers());
    for l in 0..layers {
        let mut x: u64 = 0x2545F4914F6CDD1D ^ (l as u64 + 1);
        let mut layer = LayerBuilder::new();
        // A few files per layer, as real layers have.
        for f in 0..4 {
            let data: Vec<u8> = (0..per_layer / 4)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x & 0x3f) as u8
                })
                .collect();
            layer = layer.file(&format!("data/l{l}/f{f}"), data);
        }
        builder = builder.layer(
            layer
                .build(Compression::Gzip)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    builder.build().map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn run(size_mb: usize, layers: usize, runs: usize) -> Result<()> {
    eprintln!("building a {size_mb} MB image in {layers} layers...");
    let image = generated_image(size_mb, layers)?;
    let bytes: u64 = image
        .layers
        .iter()
        .map(|l| l.compressed.len() as u64)
        .sum::<u64>()
        + image.config.size();
    let registry = Registry::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    Pusher::new(&registry)
        .push_image("bench/pull", "v1", &image)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let reference = format!("{}/bench/pull:v1", registry.host());
    println!(
        "pull: {reference}, {} layers, {:.1} MB compressed, {runs} cold runs each",
        image.layers.len(),
        bytes as f64 / 1e6
    );

    let mut targets = vec!["berth"];
    if containerd_installed() {
        targets.push("containerd");
    } else {
        println!("containerd not installed: measuring berth alone");
    }
    let mut results = Vec::new();
    for name in targets {
        let mut stats = Stats::default();
        for _ in 0..runs {
            // A fresh daemon and root every run: a cold pull, nothing cached.
            let target = match name {
                "berth" => Target::berth(&berth_bin()).await?,
                _ => Target::containerd(&registry.host(), None).await?,
            };
            let mut c = target.client().await?;
            let started = Instant::now();
            c.image
                .pull_image(PullImageRequest {
                    image: Some(ImageSpec {
                        image: reference.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await?;
            stats.push(started.elapsed());
        }
        let median = stats.median();
        println!(
            "  {name:<11} median {:>7.1} ms  {:>6.1} MB/s  (runs: {})",
            median.as_secs_f64() * 1e3,
            bytes as f64 / 1e6 / median.as_secs_f64(),
            stats.list()
        );
        results.push((name, median));
    }
    if let [(_, berth), (_, containerd)] = results[..] {
        println!(
            "  ratio: berth pulls {:.2}x as fast as containerd",
            containerd.as_secs_f64() / berth.as_secs_f64()
        );
    }
    Ok(())
}
