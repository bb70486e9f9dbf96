//! Importing images from tar archives: OCI image layouts and `docker save` output, for air-gapped hosts.
//!
//! The archive is unpacked into a private dir under `content/ingest/` (regular files and directories only, every
//! path checked; symlinks, which old `docker save` uses for repeated layers, are resolved inside the archive and
//! copied), then every blob goes through the same verification and unpacking as a pulled one.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::content::sha256_digest;
use crate::error::{Error, IoContext, Result};
use crate::ingest::Compression;
use crate::reference::{Reference, is_valid_digest};
use crate::registry::manifest::{self, Descriptor, Document, Manifest};
use crate::store::{Image, ImageStore, Names, Source};

/// Annotation containerd and Docker put on index.json entries with the full image name.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn archive_error(detail: impl std::fmt::Display) -> Error {
    Error::invalid("image archive", detail)
}

/// Splits an archive path into safe components.
fn clean(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::CurDir => {}
            _ => {
                return Err(archive_error(format!(
                    "entry {:?} leaves the archive",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Unpacks the archive's files under `dir`. Blocking.
fn extract(archive: &Path, dir: &Path) -> Result<()> {
    let f = fs::File::open(archive).ctx(|| format!("opening {}", archive.display()))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    let mut links: Vec<(PathBuf, PathBuf)> = vec![];
    for entry in ar
        .entries()
        .ctx(|| format!("reading {}", archive.display()))?
    {
        let mut entry = entry.ctx(|| format!("reading {}", archive.display()))?;
        let rel = clean(&entry.path().ctx(|| "reading archive entry name")?)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let dst = dir.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&dst).ctx(|| format!("creating {}", dst.display()))?
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(p) = dst.parent() {
                    fs::create_dir_all(p).ctx(|| format!("creating {}", p.display()))?;
                }
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dst)
                    .ctx(|| format!("creating {}", dst.display()))?;
                std::io::copy(&mut entry, &mut out)
                    .ctx(|| format!("extracting {}", rel.display()))?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .ctx(|| "reading link target")?
                    .ok_or_else(|| archive_error("link without target"))?;
                let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                    rel.parent().map(Path::to_path_buf).unwrap_or_default()
                } else {
                    PathBuf::new()
                };
                // Resolve `..` lexically inside the archive; anything leaving it is refused.
                let mut resolved = PathBuf::new();
                for c in base.join(&*target).components() {
                    match c {
                        std::path::Component::Normal(n) => resolved.push(n),
                        std::path::Component::CurDir => {}
                        std::path::Component::ParentDir if resolved.pop() => {}
                        _ => {
                            return Err(archive_error(format!(
                                "link {} leaves the archive",
                                rel.display()
                            )));
                        }
                    }
                }
                links.push((rel, resolved));
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                return Err(archive_error(format!(
                    "unexpected entry {} of type {other:?}",
                    rel.display()
                )));
            }
        }
    }
    for (link, target) in links {
        let (src, dst) = (dir.join(&target), dir.join(&link));
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p).ctx(|| format!("creating {}", p.display()))?;
        }
        let md = fs::symlink_metadata(&src)
            .ctx(|| format!("archive link {} -> {}", link.display(), target.display()))?;
        if !md.is_file() {
            return Err(archive_error(format!(
                "link {} does not point at a file",
                link.display()
            )));
        }
        fs::copy(&src, &dst).ctx(|| format!("copying {}", target.display()))?;
    }
    Ok(())
}

fn read_small(path: &Path, what: &str) -> Result<Vec<u8>> {
    let md = fs::metadata(path).ctx(|| format!("{what}: {}", path.display()))?;
    if md.len() > crate::registry::MAX_MANIFEST_BYTES {
        return Err(archive_error(format!("{what} is larger than 4 MiB")));
    }
    fs::read(path).ctx(|| format!("reading {what}"))
}

fn hash_file(path: &Path) -> Result<(String, u64, Compression)> {
    use sha2::{Digest as _, Sha256};
    let mut f = fs::File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut n_total = 0u64;
    let mut head = Vec::new();
    loop {
        let n = f
            .read(&mut buf)
            .ctx(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        if head.len() < 4 {
            head.extend_from_slice(&buf[..n.min(4)]);
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((
        format!("sha256:{:x}", h.finalize()),
        n_total,
        Compression::sniff(&head),
    ))
}

impl ImageStore {
    /// Imports every image of an OCI-layout tar or a `docker save` tar. Images named in the archive get those
    /// names (`RepoTags`, or the `io.containerd.image.name` / full `org.opencontainers.image.ref.name` annotation).
    pub async fn import(&self, archive: &Path) -> Result<Vec<Image>> {
        let _gc = self.gc_lock.read().await;
        let scratch = Scratch(
            self.content
                .ingest_dir()
                .join(format!("import-{}", crate::content::unique_suffix())),
        );
        fs::create_dir(&scratch.0).ctx(|| format!("creating {}", scratch.0.display()))?;
        let (src, dst) = (archive.to_path_buf(), scratch.0.clone());
        tokio::task::spawn_blocking(move || extract(&src, &dst))
            .await
            .map_err(|e| Error::io("extracting archive", std::io::Error::other(e)))??;
        let dir = scratch.0.clone();
        if dir.join("manifest.json").is_file() {
            self.import_docker(&dir).await
        } else if dir.join("index.json").is_file() {
            self.import_oci(&dir).await
        } else {
            Err(archive_error(
                "neither an OCI layout (index.json) nor a docker save archive (manifest.json)",
            ))
        }
    }

    async fn import_oci(&self, dir: &Path) -> Result<Vec<Image>> {
        let blobs = dir.join("blobs/sha256");
        let blob = |d: &Descriptor| -> Result<Vec<u8>> {
            if !is_valid_digest(&d.digest) {
                return Err(Error::Unsupported(format!("digest {:?}", d.digest)));
            }
            let bytes = read_small(&blobs.join(&d.digest[7..]), "manifest")?;
            self.content
                .write_verified("manifest", &bytes, &d.digest, Some(d.size))?;
            Ok(bytes)
        };
        let index: manifest::IndexManifest =
            serde_json::from_slice(&read_small(&dir.join("index.json"), "index.json")?)
                .map_err(|e| archive_error(format!("index.json: {e}")))?;
        let mut out = vec![];
        for top in &index.manifests {
            let annotations = top.annotations.clone().unwrap_or_default();
            let name = annotations
                .get(ANNOTATION_CONTAINERD_NAME)
                .or_else(|| {
                    annotations
                        .get(ANNOTATION_REF_NAME)
                        .filter(|n| n.contains('/') || n.contains(':'))
                })
                .and_then(|n| Reference::parse(n).ok());
            let bytes = blob(top)?;
            let (m, digest): (Manifest, String) =
                match manifest::parse(&bytes, Some(&top.media_type))? {
                    Document::Image(m) => (m, top.digest.clone()),
                    Document::Index(idx) => {
                        let d = manifest::select_platform(&idx, self.platform())?.clone();
                        match manifest::parse(&blob(&d)?, Some(&d.media_type))? {
                            Document::Image(m) => (m, d.digest.clone()),
                            Document::Index(_) => {
                                return Err(Error::Unsupported("nested image indexes".into()));
                            }
                        }
                    }
                };
            let config = read_small(
                &blobs.join(m.config.digest.trim_start_matches("sha256:")),
                "image config",
            )?;
            self.content.write_verified(
                "image config",
                &config,
                &m.config.digest,
                Some(m.config.size),
            )?;
            let names = Names {
                tags: name
                    .as_ref()
                    .and_then(Reference::tagged)
                    .into_iter()
                    .collect(),
                digests: name
                    .as_ref()
                    .map(|n| n.with_digest(&top.digest))
                    .into_iter()
                    .collect(),
            };
            let what = name
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_else(|| digest.clone());
            out.push(
                self.add_local(
                    &m,
                    &digest,
                    &config,
                    names,
                    Source::Dir(blobs.clone()),
                    &what,
                )
                .await?,
            );
        }
        Ok(out)
    }

    async fn import_docker(&self, dir: &Path) -> Result<Vec<Image>> {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&read_small(&dir.join("manifest.json"), "manifest.json")?)
                .map_err(|e| archive_error(format!("manifest.json: {e}")))?;
        let by_digest = dir.join(".by-digest");
        fs::create_dir_all(&by_digest).ctx(|| "creating import staging dir")?;
        let mut out = vec![];
        for e in entries {
            let config = read_small(&dir.join(clean(Path::new(&e.config))?), "image config")?;
            let config_digest = sha256_digest(&config);
            self.content
                .write_verified("image config", &config, &config_digest, None)?;
            let mut layers = vec![];
            let mut seen: HashMap<String, ()> = HashMap::new();
            for l in &e.layers {
                let path = dir.join(clean(Path::new(l))?);
                let (digest, size, compression) = hash_file(&path)?;
                let media_type = match compression {
                    Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                    Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
                };
                if seen.insert(digest.clone(), ()).is_none() {
                    let staged = by_digest.join(&digest[7..]);
                    if !staged.exists() {
                        fs::hard_link(&path, &staged)
                            .or_else(|_| fs::copy(&path, &staged).map(|_| ()))
                            .ctx(|| "staging layer")?;
                    }
                }
                layers.push(Descriptor {
                    media_type: media_type.into(),
                    digest,
                    size,
                    platform: None,
                    annotations: None,
                    urls: None,
                });
            }
            let m = Manifest {
                schema_version: 2,
                media_type: Some(manifest::DOCKER_MANIFEST.into()),
                config: Descriptor {
                    media_type: manifest::DOCKER_CONFIG.into(),
                    digest: config_digest.clone(),
                    size: config.len() as u64,
                    platform: None,
                    annotations: None,
                    urls: None,
                },
                layers,
            };
            let bytes = serde_json::to_vec(&m).map_err(|e| Error::invalid("manifest", e))?;
            let manifest_digest = sha256_digest(&bytes);
            self.content
                .write_verified("manifest", &bytes, &manifest_digest, None)?;
            let tags: Vec<String> = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| Reference::parse(t).ok().and_then(|r| r.tagged()))
                .collect();
            let what = tags
                .first()
                .cloned()
                .unwrap_or_else(|| config_digest.clone());
            let names = Names {
                tags,
                digests: vec![],
            };
            out.push(
                self.add_local(
                    &m,
                    &manifest_digest,
                    &config,
                    names,
                    Source::Dir(by_digest.clone()),
                    &what,
                )
                .await?,
            );
        }
        Ok(out)
    }
}
