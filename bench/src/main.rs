//! `hack/bench`: times CRI flows against Berth and, when installed, containerd, in one run, and prints medians
//! and ratios. A benchmark, not a test: it passes or fails nothing.

mod density;
mod lifecycle;
mod pods;
mod pull;
mod target;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth-bench")]
struct Cli {
    #[command(subcommand)]
    part: Part,
}

#[derive(Subcommand)]
enum Part {
    /// Cold pull of a generated multi-layer image from a local registry.
    Pull {
        #[arg(long, default_value_t = 200)]
        size_mb: usize,
        #[arg(long, default_value_t = 6)]
        layers: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// One pod at a time through RunPodSandbox, create+start, ExecSync, stop+remove container, stop+remove pod.
    Lifecycle {
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Many pods with one sleeping container each: host memory and processes per pod.
    Density {
        #[arg(long, default_value_t = 100)]
        pods: usize,
        /// Rounds (each runtime once per round); medians are reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

/// The `berth` binary beside this one (same cargo profile), or `$BERTH_BIN`.
pub fn berth_bin() -> PathBuf {
    std::env::var_os("BERTH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("berth")))
                .unwrap_or_else(|| "berth".into())
        })
}

#[derive(Default)]
pub struct Stats(Vec<Duration>);

impl Stats {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    pub fn median(&self) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }
    pub fn list(&self) -> String {
        self.0
            .iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let part = async {
        match cli.part {
            Part::Pull {
                size_mb,
                layers,
                runs,
            } => pull::run(size_mb, layers, runs).await,
            Part::Lifecycle { runs } => lifecycle::run(runs).await,
            Part::Density { pods, rounds } => density::run(pods, rounds).await,
        }
    };
    // On Ctrl-C the part's future is dropped, and with it every daemon, pod and registry it started.
    rt.block_on(async {
        tokio::select! {
            result = part => result,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; cleaned up"),
        }
    })
}
