//! `berth image pull|ls|rm|import`: the image store of a running daemon, for people and air-gapped hosts.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use berth_cri::admin::pull_progress::Kind;
use berth_cri::admin::{ImportRequest, PullRequest};
use berth_cri::api::{ImageSpec, ListImagesRequest, RemoveImageRequest};
use berth_cri::client::Client;

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Pull an image, showing bytes per layer and in total.
    Pull {
        reference: String,
        /// Registry credentials as USER:PASSWORD.
        #[arg(long)]
        creds: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls,
    /// Remove images by name, id or digest (removing one of several names only untags).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Import an OCI-layout or `docker save` tar archive.
    Import { archive: std::path::PathBuf },
}

pub async fn run(socket: &Path, cmd: ImageCommand) -> Result<()> {
    let mut client = Client::connect(socket).await.with_context(|| {
        format!(
            "cannot reach berth at {}: is `berth serve` running?",
            socket.display()
        )
    })?;
    match cmd {
        ImageCommand::Pull { reference, creds } => {
            pull(&mut client, &reference, creds.as_deref()).await
        }
        ImageCommand::Ls => ls(&mut client).await,
        ImageCommand::Rm { images } => {
            for image in images {
                client
                    .image
                    .remove_image(RemoveImageRequest {
                        image: Some(ImageSpec {
                            image: image.clone(),
                            ..Default::default()
                        }),
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("{image}: {}", e.message()))?;
                println!("Deleted: {image}");
            }
            Ok(())
        }
        ImageCommand::Import { archive } => {
            let path = std::fs::canonicalize(&archive)
                .with_context(|| format!("{}", archive.display()))?;
            let r = client
                .admin
                .import(ImportRequest {
                    path: path.display().to_string(),
                })
                .await
                .map_err(|e| anyhow::anyhow!("import {}: {}", archive.display(), e.message()))?
                .into_inner();
            for i in r.images {
                println!("Imported {} {}", short_id(&i.id), i.repo_tags.join(" "));
            }
            Ok(())
        }
    }
}

async fn pull(client: &mut Client, reference: &str, creds: Option<&str>) -> Result<()> {
    let (username, password) = match creds {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (u.to_string(), p.to_string()),
            None => bail!("--creds must be USER:PASSWORD"),
        },
        None => Default::default(),
    };
    let mut stream = client
        .admin
        .pull(PullRequest {
            reference: reference.to_string(),
            username,
            password,
        })
        .await
        .map_err(|e| anyhow::anyhow!("pull {reference}: {}", e.message()))?
        .into_inner();
    let tty = std::io::stdout().is_terminal();
    let started = std::time::Instant::now();
    let mut layers: BTreeMap<String, (u64, u64, &'static str)> = BTreeMap::new();
    let mut total = 0u64;
    let mut drawn = 0usize;
    let mut out = std::io::stdout();
    loop {
        let event = match stream.message().await {
            Ok(Some(e)) => e,
            Ok(None) => bail!("pull {reference}: the daemon ended the pull without a result"),
            Err(e) => bail!("pull {reference}: {}", e.message()),
        };
        let kind = Kind::try_from(event.kind).unwrap_or(Kind::LayerProgress);
        match kind {
            Kind::Resolved => {
                total = event.total_bytes;
                println!(
                    "{reference}: {} layers, {} (manifest {})",
                    event.layers,
                    human(total),
                    short_id(&event.digest)
                );
                continue;
            }
            Kind::Done => {
                if tty {
                    redraw(&mut out, &layers, total, &mut drawn)?;
                }
                let secs = started.elapsed().as_secs_f64();
                let fetched: u64 = layers
                    .values()
                    .filter(|l| l.2 != "exists")
                    .map(|l| l.0)
                    .sum();
                println!(
                    "Image is up to date for {reference}: {} ({} in {secs:.1}s, {:.1} MB/s)",
                    event.digest,
                    human(fetched),
                    fetched as f64 / 1e6 / secs.max(1e-3)
                );
                return Ok(());
            }
            Kind::LayerCached => {
                layers.insert(event.digest.clone(), (event.size, event.size, "exists"));
            }
            Kind::LayerStarted | Kind::LayerProgress => {
                layers.insert(
                    event.digest.clone(),
                    (event.downloaded, event.size, "pulling"),
                );
            }
            Kind::LayerDone => {
                layers.insert(event.digest.clone(), (event.size, event.size, "done"));
            }
        }
        if tty {
            redraw(&mut out, &layers, total, &mut drawn)?;
        } else if matches!(kind, Kind::LayerDone | Kind::LayerCached) {
            println!(
                "{}: {} {}",
                short_id(&event.digest),
                if kind == Kind::LayerDone {
                    "done"
                } else {
                    "exists"
                },
                human(event.size)
            );
        }
    }
}

/// Rewrites the per-layer lines in place (ANSI cursor-up), then a total line.
fn redraw(
    out: &mut impl Write,
    layers: &BTreeMap<String, (u64, u64, &str)>,
    total: u64,
    drawn: &mut usize,
) -> Result<()> {
    if *drawn > 0 {
        write!(out, "\x1b[{}A", *drawn)?;
    }
    let mut sum = 0;
    for (digest, (done, size, state)) in layers {
        sum += done;
        writeln!(
            out,
            "\x1b[2K{}: {:<8} {} / {}",
            short_id(digest),
            state,
            human(*done),
            human(*size)
        )?;
    }
    writeln!(out, "\x1b[2Ktotal: {} / {}", human(sum), human(total))?;
    *drawn = layers.len() + 1;
    out.flush()?;
    Ok(())
}

async fn ls(client: &mut Client) -> Result<()> {
    let images = client
        .image
        .list_images(ListImagesRequest::default())
        .await
        .map_err(|e| anyhow::anyhow!("list images: {}", e.message()))?
        .into_inner()
        .images;
    println!("{:<60} {:<14} {:>10}", "IMAGE", "ID", "SIZE");
    for i in images {
        let names = if i.repo_tags.is_empty() {
            i.repo_digests.clone()
        } else {
            i.repo_tags.clone()
        };
        for name in if names.is_empty() {
            vec!["<none>".to_string()]
        } else {
            names
        } {
            println!("{name:<60} {:<14} {:>10}", short_id(&i.id), human(i.size));
        }
    }
    Ok(())
}

fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
