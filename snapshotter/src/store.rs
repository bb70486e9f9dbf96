//! The image store: image records in the shared metadata DB, tying references to content and snapshots.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use futures_util::StreamExt as _;
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::config::{Auth, RegistryConfig};
use crate::content::{ContentStore, sha256_digest};
use crate::error::{Error, IoContext, Result};
use crate::ingest::{self, ChannelReader, Compression, LayerJob};
use crate::reference::{Reference, is_valid_digest};
use crate::registry::manifest::{
    self, Document, ImageConfigDoc, Manifest, Platform, RuntimeConfig,
};
use crate::registry::{self, Client};
use crate::snapshot::{self, Kind, Mount, Snapshotter, SnapshotterKind, Usage};

/// Image records, keyed by image id (config digest), JSON values.
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images.by_id");

/// Largest image config we download (they are parsed in memory).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// How many layers of one pull download at once.
const PARALLEL_LAYERS: usize = 4;

/// One layer of an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the blob as stored (compressed).
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Identity of the stack up to this layer; also its snapshot key.
    pub chain_id: String,
    pub size: u64,
    pub media_type: String,
}

/// An image as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The config digest, `sha256:...`: the same for the same image from any registry.
    pub id: String,
    /// `registry/repo:tag` names.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:...` names; the digest is what was pulled (an index digest if an index was pulled).
    pub repo_digests: Vec<String>,
    /// The platform manifest actually unpacked.
    pub manifest_digest: String,
    /// Bytes of content: manifest, config and compressed layers.
    pub size: u64,
    pub layers: Vec<Layer>,
    pub os: String,
    pub architecture: String,
    /// `config` of the image config: user, env, entrypoint, cmd, working dir, stop signal, volumes, labels.
    pub config: RuntimeConfig,
}

impl Image {
    /// The image's `User` as the CRI's ImageStatus reports it: `(uid, username)`. `"1000"` and `"1000:50"` give a
    /// uid, `"berth"` or `"berth:staff"` a username, an empty or absent User neither (containerd's rules).
    pub fn user(&self) -> (Option<i64>, Option<String>) {
        let user = self.config.user.as_deref().unwrap_or("");
        let name = user.split(':').next().unwrap_or("");
        if name.is_empty() {
            return (None, None);
        }
        match name.parse::<i64>() {
            Ok(uid) => (Some(uid), None),
            Err(_) => (None, Some(name.to_string())),
        }
    }

    /// The snapshot a container of this image is prepared on (`None` for an image without layers).
    pub fn top_snapshot(&self) -> Option<&str> {
        self.layers.last().map(|l| l.chain_id.as_str())
    }
}

/// What a pull reports as it goes (for progress displays).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    Resolved {
        reference: String,
        manifest_digest: String,
        layers: usize,
        total_bytes: u64,
    },
    /// Already stored and unpacked; nothing to fetch.
    LayerCached {
        digest: String,
        size: u64,
    },
    LayerStarted {
        digest: String,
        size: u64,
    },
    LayerProgress {
        digest: String,
        downloaded: u64,
        size: u64,
    },
    LayerDone {
        digest: String,
        size: u64,
    },
    Done {
        id: String,
    },
}

/// Bytes and inodes of the image store, split as the CRI's ImageFsInfo wants it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// Content blobs and image layer snapshots.
    pub images: Usage,
    /// Writable layers of containers (active snapshots).
    pub containers: Usage,
}

/// What [`ImageStore::gc`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub blobs_removed: usize,
    pub snapshots_removed: usize,
    pub orphans_removed: usize,
}

/// Per-key async mutexes: concurrent pulls of one reference, or of one layer, do the work once.
#[derive(Default)]
struct KeyLocks {
    map: std::sync::Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, w| w.strong_count() > 0);
            match map.get(key).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }
}

type Progress = Arc<dyn Fn(ProgressEvent) + Send + Sync>;

/// Images, their content and their snapshots under one root dir. Cheap to share behind an `Arc`.
pub struct ImageStore {
    root: PathBuf,
    pub(crate) content: Arc<ContentStore>,
    pub(crate) snapshots: Arc<dyn Snapshotter>,
    kind: SnapshotterKind,
    db: Arc<redb::Database>,
    config: RegistryConfig,
    http: reqwest::Client,
    http_insecure: reqwest::Client,
    locks: KeyLocks,
    /// Pulls and imports hold it shared; GC holds it exclusively, so it never collects what a pull is writing.
    pub(crate) gc_lock: tokio::sync::RwLock<()>,
    platform: Platform,
}

fn http_client(insecure: bool) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(120))
        .danger_accept_invalid_certs(insecure)
        .build()
        .map_err(|e| Error::Unsupported(format!("cannot build the http client: {e}")))
}

/// Runs filesystem-heavy work (GC walks and deletes whole trees) without stalling the async runtime's other
/// tasks: on a multi-threaded runtime the worker hands its queue to another thread meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Runs `jobs` at most [`PARALLEL_LAYERS`] at a time; the first error wins, after every job has finished.
async fn run_parallel<F: std::future::Future<Output = Result<()>>>(jobs: Vec<F>) -> Result<()> {
    let results: Vec<Result<()>> = futures_util::stream::iter(jobs)
        .buffer_unordered(PARALLEL_LAYERS)
        .collect()
        .await;
    results.into_iter().collect()
}

/// `sha256(parent_chain + " " + diff_id)`, the OCI chain id.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => sha256_digest(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl ImageStore {
    /// Opens (creating) the store under `root`: `content/`, `snapshots/`; image records go to `db` in tables
    /// named `images.*`. Runs GC first, clearing whatever a crash left half-done.
    pub async fn open(
        root: &Path,
        config: RegistryConfig,
        kind: SnapshotterKind,
        db: Arc<redb::Database>,
    ) -> Result<ImageStore> {
        std::fs::create_dir_all(root).ctx(|| format!("creating {}", root.display()))?;
        let content = Arc::new(ContentStore::open(&root.join("content"))?);
        let snapshots: Arc<dyn Snapshotter> =
            Arc::from(snapshot::open(kind, &root.join("snapshots"))?);
        {
            let tx = db.begin_write()?;
            tx.open_table(IMAGES)?;
            tx.commit()?;
        }
        let store = ImageStore {
            root: root.to_path_buf(),
            content,
            snapshots,
            kind,
            db,
            config,
            http: http_client(false)?,
            http_insecure: http_client(true)?,
            locks: KeyLocks::default(),
            gc_lock: tokio::sync::RwLock::new(()),
            platform: Platform::host(),
        };
        store.gc().await?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn snapshotter(&self) -> &dyn Snapshotter {
        self.snapshots.as_ref()
    }

    pub fn snapshotter_kind(&self) -> SnapshotterKind {
        self.kind
    }

    /// Overrides the platform picked from indexes (default: the host's).
    pub fn set_platform(&mut self, platform: Platform) {
        self.platform = platform;
    }

    // ---- records ----

    pub fn list(&self) -> Result<Vec<Image>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(IMAGES)?;
        let mut v = vec![];
        for row in t.iter()? {
            let (_, val) = row?;
            v.push(
                serde_json::from_slice(val.value())
                    .map_err(|e| Error::Db(format!("corrupt image record: {e}")))?,
            );
        }
        Ok(v)
    }

    /// Finds an image by id (`sha256:<hex>`, bare hex, or an unambiguous id prefix of 12+ hex digits), by manifest
    /// or repo digest, or by name (`busybox`, `host/repo:tag`, `repo@sha256:..`).
    pub fn get(&self, name: &str) -> Result<Image> {
        self.find(name).map(|(img, _)| img)
    }

    /// The image and, when `name` was a tag, that normalised tag.
    fn find(&self, name: &str) -> Result<(Image, Option<String>)> {
        let images = self.list()?;
        let name = name.trim();
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let full = format!("sha256:{hex}");
            if let Some(i) = images
                .iter()
                .find(|i| i.id == full || i.manifest_digest == full)
            {
                return Ok((i.clone(), None));
            }
            if let Some(i) = images.iter().find(|i| {
                i.repo_digests
                    .iter()
                    .any(|d| d.ends_with(&format!("@{full}")))
            }) {
                return Ok((i.clone(), None));
            }
            let by_prefix: Vec<&Image> =
                images.iter().filter(|i| i.id.starts_with(&full)).collect();
            if by_prefix.len() == 1 {
                return Ok((by_prefix[0].clone(), None));
            }
        }
        let r = Reference::parse(name)?;
        if let Some(d) = r.digest() {
            let want = r.with_digest(d);
            return images
                .into_iter()
                .find(|i| i.repo_digests.contains(&want))
                .map(|i| (i, None))
                .ok_or_else(|| Error::NotFound(format!("image {want}")));
        }
        let tag = r.tagged().unwrap_or_default();
        images
            .into_iter()
            .find(|i| i.repo_tags.contains(&tag))
            .map(|i| (i, Some(tag.clone())))
            .ok_or_else(|| Error::NotFound(format!("image {tag}")))
    }

    /// Stores `image`, merging names into an existing record of the same id and moving its tags off other images.
    fn record(&self, image: &Image) -> Result<Image> {
        let tx = self.db.begin_write()?;
        let merged;
        {
            let mut t = tx.open_table(IMAGES)?;
            let mut others: Vec<Image> = vec![];
            for row in t.iter()? {
                let (_, v) = row?;
                let i: Image = serde_json::from_slice(v.value())
                    .map_err(|e| Error::Db(format!("corrupt image record: {e}")))?;
                others.push(i);
            }
            let mut m = others
                .iter()
                .find(|i| i.id == image.id)
                .cloned()
                .unwrap_or_else(|| image.clone());
            for tag in &image.repo_tags {
                if !m.repo_tags.contains(tag) {
                    m.repo_tags.push(tag.clone());
                }
            }
            for d in &image.repo_digests {
                if !m.repo_digests.contains(d) {
                    m.repo_digests.push(d.clone());
                }
            }
            for mut o in others.into_iter().filter(|o| o.id != image.id) {
                let before = o.repo_tags.len();
                o.repo_tags.retain(|t| !image.repo_tags.contains(t));
                if o.repo_tags.len() != before {
                    let bytes = serde_json::to_vec(&o).map_err(|e| Error::Db(e.to_string()))?;
                    t.insert(o.id.as_str(), bytes.as_slice())?;
                }
            }
            let bytes = serde_json::to_vec(&m).map_err(|e| Error::Db(e.to_string()))?;
            t.insert(m.id.as_str(), bytes.as_slice())?;
            merged = m;
        }
        tx.commit()?;
        Ok(merged)
    }

    /// Removes an image by tag, id or digest. Removing one tag of an image that has others only untags it.
    /// Content and snapshots no longer needed are garbage-collected before this returns.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let (image, tag) = self.find(name)?;
        {
            let tx = self.db.begin_write()?;
            {
                let mut t = tx.open_table(IMAGES)?;
                match tag {
                    Some(tag) if image.repo_tags.len() > 1 => {
                        let mut m = image.clone();
                        m.repo_tags.retain(|t| *t != tag);
                        let bytes = serde_json::to_vec(&m).map_err(|e| Error::Db(e.to_string()))?;
                        t.insert(m.id.as_str(), bytes.as_slice())?;
                    }
                    _ => {
                        t.remove(image.id.as_str())?;
                    }
                }
            }
            tx.commit()?;
        }
        self.gc().await?;
        Ok(())
    }

    /// The raw image config JSON (for verbose status).
    pub fn config_json(&self, image: &Image) -> Result<Vec<u8>> {
        self.content.read(&image.id)
    }

    // ---- pull ----

    /// Pulls `reference` for this host's platform, storing and unpacking every layer once.
    pub async fn pull(
        &self,
        reference: &Reference,
        auth: Option<&Auth>,
        progress: impl Fn(ProgressEvent) + Send + Sync + 'static,
    ) -> Result<Image> {
        let progress: Progress = Arc::new(progress);
        let result = self.pull_locked(reference, auth, progress).await;
        if result.is_err() {
            // Layers of a failed pull are not an image: drop them, so a failure stores nothing. Only if no other
            // pull runs (they hold the lock shared): waiting for them would delay this error; the next GC (at
            // the next removal or start-up) collects the leftovers instead.
            if let Ok(_g) = self.gc_lock.try_write()
                && let Err(e) = blocking(|| self.gc_locked())
            {
                tracing::warn!("gc after failed pull of {reference}: {e}");
            }
        }
        result
    }

    async fn pull_locked(
        &self,
        reference: &Reference,
        auth: Option<&Auth>,
        progress: Progress,
    ) -> Result<Image> {
        let _gc = self.gc_lock.read().await;
        let _pull = self.locks.lock(&format!("pull:{reference}")).await;
        let (client, top_bytes, content_type, top_digest) = self.resolve(reference, auth).await?;
        let client = Arc::new(client);
        let (manifest, manifest_digest) =
            match manifest::parse(&top_bytes, content_type.as_deref())? {
                Document::Image(m) => (m, top_digest.clone()),
                Document::Index(index) => {
                    self.content
                        .write_verified("image index", &top_bytes, &top_digest, None)?;
                    let desc = manifest::select_platform(&index, &self.platform)?.clone();
                    let (bytes, ct, digest) = client.manifest(&desc.digest).await?;
                    if bytes.len() as u64 != desc.size {
                        return Err(Error::SizeMismatch {
                            what: "manifest".into(),
                            expected: desc.size,
                            actual: bytes.len() as u64,
                        });
                    }
                    match manifest::parse(&bytes, ct.as_deref())? {
                        Document::Image(m) => {
                            self.content.write_verified(
                                "manifest",
                                &bytes,
                                &digest,
                                Some(desc.size),
                            )?;
                            (m, digest)
                        }
                        Document::Index(_) => {
                            return Err(Error::Unsupported(
                                "an image index nested in an image index".into(),
                            ));
                        }
                    }
                }
            };
        if manifest_digest == top_digest {
            self.content
                .write_verified("manifest", &top_bytes, &top_digest, None)?;
        }
        let names = Names {
            tags: reference.tagged().into_iter().collect(),
            digests: vec![reference.with_digest(&top_digest)],
        };
        let image = self
            .fetch_image(
                &client,
                &manifest,
                &manifest_digest,
                reference,
                progress.clone(),
            )
            .await?;
        let image = self.finish(image, names)?;
        progress(ProgressEvent::Done {
            id: image.id.clone(),
        });
        Ok(image)
    }

    /// Finds the manifest on the first endpoint (mirror, then upstream/server) that has it.
    async fn resolve(
        &self,
        reference: &Reference,
        auth: Option<&Auth>,
    ) -> Result<(Client, Vec<u8>, Option<String>, String)> {
        let endpoints = self.config.endpoints(reference.registry());
        let http = if self.config.insecure(reference.registry()) {
            &self.http_insecure
        } else {
            &self.http
        };
        let mut last = None;
        for ep in endpoints {
            let client = Client::new(http.clone(), ep, reference.repository(), auth.cloned());
            match client.manifest(reference.manifest_ref()).await {
                Ok((bytes, ct, digest)) => return Ok((client, bytes, ct, digest)),
                Err(e) => {
                    tracing::debug!(endpoint = %client.endpoint().base, "manifest of {reference}: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::NotFound(format!("no endpoint for registry {}", reference.registry()))
        }))
    }

    async fn fetch_image(
        &self,
        client: &Arc<Client>,
        manifest: &Manifest,
        manifest_digest: &str,
        reference: &Reference,
        progress: Progress,
    ) -> Result<Image> {
        let cfg_desc = &manifest.config;
        let config_bytes = if self.content.has(&cfg_desc.digest) {
            self.content.read(&cfg_desc.digest)?
        } else {
            // Configs are held in memory: refuse absurd ones before asking for them.
            if cfg_desc.size > MAX_CONFIG_BYTES {
                return Err(Error::invalid(
                    "image config",
                    format!("{} bytes is more than the 16 MiB we accept", cfg_desc.size),
                ));
            }
            let resp = client.blob(&cfg_desc.digest).await?;
            let bytes = registry::read_limited(resp, cfg_desc.size, "image config")
                .await
                .map_err(|e| match e {
                    Error::Invalid { .. } => Error::SizeMismatch {
                        what: "image config".into(),
                        expected: cfg_desc.size,
                        actual: cfg_desc.size + 1,
                    },
                    other => other,
                })?;
            self.content.write_verified(
                "image config",
                &bytes,
                &cfg_desc.digest,
                Some(cfg_desc.size),
            )?;
            bytes
        };
        let image = self.describe(manifest, manifest_digest, &config_bytes, reference)?;
        let total: u64 = image.layers.iter().map(|l| l.size).sum();
        progress(ProgressEvent::Resolved {
            reference: reference.to_string(),
            manifest_digest: manifest_digest.to_string(),
            layers: image.layers.len(),
            total_bytes: total,
        });
        let source = Source::Registry(client.clone());
        self.ensure_layers(&image, &source, &progress).await?;
        Ok(image)
    }

    /// Builds the record for a manifest + config, checking they agree.
    fn describe(
        &self,
        manifest: &Manifest,
        manifest_digest: &str,
        config_bytes: &[u8],
        what: &dyn std::fmt::Display,
    ) -> Result<Image> {
        let mt = manifest.config.media_type.as_str();
        if !mt.is_empty() && mt != manifest::OCI_CONFIG && mt != manifest::DOCKER_CONFIG {
            return Err(Error::Unsupported(format!(
                "{what} is not a container image (config media type {mt})"
            )));
        }
        let cfg: ImageConfigDoc =
            serde_json::from_slice(config_bytes).map_err(|e| Error::invalid("image config", e))?;
        if cfg.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::invalid(
                "image",
                format!(
                    "{what}: manifest has {} layers but config lists {} diff_ids",
                    manifest.layers.len(),
                    cfg.rootfs.diff_ids.len()
                ),
            ));
        }
        for d in manifest
            .layers
            .iter()
            .map(|l| &l.digest)
            .chain(cfg.rootfs.diff_ids.iter())
        {
            if !is_valid_digest(d) {
                return Err(Error::Unsupported(format!(
                    "digest {d:?} (only sha256 is supported)"
                )));
            }
        }
        let chains = chain_ids(&cfg.rootfs.diff_ids);
        let layers: Vec<Layer> = manifest
            .layers
            .iter()
            .zip(cfg.rootfs.diff_ids.iter().zip(chains))
            .map(|(d, (diff, chain))| Layer {
                digest: d.digest.clone(),
                diff_id: diff.clone(),
                chain_id: chain,
                size: d.size,
                media_type: d.media_type.clone(),
            })
            .collect();
        let manifest_size = serde_json::to_vec(manifest)
            .map(|v| v.len() as u64)
            .unwrap_or(0);
        Ok(Image {
            id: manifest.config.digest.clone(),
            repo_tags: vec![],
            repo_digests: vec![],
            manifest_digest: manifest_digest.to_string(),
            size: manifest.config.size + manifest_size + layers.iter().map(|l| l.size).sum::<u64>(),
            layers,
            os: cfg.os,
            architecture: cfg.architecture,
            config: cfg.config.unwrap_or_default(),
        })
    }

    fn finish(&self, mut image: Image, names: Names) -> Result<Image> {
        image.repo_tags = names.tags;
        image.repo_digests = names.digests;
        self.record(&image)
    }

    /// Makes sure every layer's blob is stored and its snapshot committed.
    async fn ensure_layers(
        &self,
        image: &Image,
        source: &Source,
        progress: &Progress,
    ) -> Result<()> {
        type Job<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;
        match self.kind {
            SnapshotterKind::Overlayfs => {
                // Each layer is unpacked on its own while it streams; parents need not be there yet.
                let mut jobs: Vec<Job<'_>> = Vec::with_capacity(image.layers.len());
                for (i, layer) in image.layers.iter().enumerate() {
                    let parent = i.checked_sub(1).map(|p| image.layers[p].chain_id.clone());
                    jobs.push(Box::pin(self.ensure_layer(layer, parent, source, progress)));
                }
                run_parallel(jobs).await?;
            }
            SnapshotterKind::Native => {
                // Blobs in parallel, then each snapshot copied from its parent in order.
                let mut jobs: Vec<Job<'_>> = Vec::with_capacity(image.layers.len());
                for layer in &image.layers {
                    jobs.push(Box::pin(self.ensure_blob(layer, source, progress)));
                }
                run_parallel(jobs).await?;
                for (i, layer) in image.layers.iter().enumerate() {
                    let parent = i.checked_sub(1).map(|p| image.layers[p].chain_id.clone());
                    self.ensure_layer(layer, parent, &Source::Local, progress)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn ensure_blob(&self, layer: &Layer, source: &Source, progress: &Progress) -> Result<()> {
        let _l = self.locks.lock(&format!("blob:{}", layer.digest)).await;
        if self.content.has(&layer.digest) {
            return Ok(());
        }
        self.transfer(layer, None, source, progress).await
    }

    async fn ensure_layer(
        &self,
        layer: &Layer,
        parent: Option<String>,
        source: &Source,
        progress: &Progress,
    ) -> Result<()> {
        let _l = self.locks.lock(&format!("layer:{}", layer.chain_id)).await;
        let have_snapshot = self
            .snapshots
            .stat(&layer.chain_id)
            .is_ok_and(|i| i.kind == Kind::Committed);
        if have_snapshot && self.content.has(&layer.digest) {
            progress(ProgressEvent::LayerCached {
                digest: layer.digest.clone(),
                size: layer.size,
            });
            return Ok(());
        }
        if have_snapshot {
            return self.ensure_blob(layer, source, progress).await;
        }
        let tmp = format!("tmp-{}", crate::content::unique_suffix());
        let snapshots = self.snapshots.clone();
        let (tmp2, parent2) = (tmp.clone(), parent.clone());
        let prepared =
            tokio::task::spawn_blocking(move || snapshots.prepare_diff(&tmp2, parent2.as_deref()))
                .await
                .map_err(|e| Error::io("preparing snapshot", std::io::Error::other(e)))?;
        let result = async {
            let target = prepared?;
            self.transfer(layer, Some(target), source, progress).await?;
            match self.snapshots.commit(&layer.chain_id, &tmp) {
                Err(Error::AlreadyExists(_)) => self.snapshots.remove(&tmp),
                other => other,
            }
        }
        .await;
        if result.is_err() {
            let _ = self.snapshots.remove(&tmp);
        }
        result
    }

    /// Moves one layer's bytes from `source` through verification (and unpacking, if `target` is given).
    async fn transfer(
        &self,
        layer: &Layer,
        target: Option<(PathBuf, crate::unpack::Whiteouts)>,
        source: &Source,
        progress: &Progress,
    ) -> Result<()> {
        let local = self.content.has(&layer.digest);
        let mut job = LayerJob {
            name: layer.digest.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: layer.diff_id.clone(),
            compression: Compression::from_media_type(&layer.media_type)?,
            store_blob: !local,
            unpack_into: target,
        };
        let content = self.content.clone();
        if local || matches!(source, Source::Local | Source::Dir(_)) {
            let file = match (local, source) {
                (false, Source::Dir(dir)) => {
                    let p = dir.join(layer.digest.trim_start_matches("sha256:"));
                    std::fs::File::open(&p).ctx(|| format!("opening {}", p.display()))?
                }
                _ => self.content.open_blob(&layer.digest)?,
            };
            if !local {
                let mut head = [0u8; 4];
                let n = std::io::Read::read(&mut &file, &mut head).ctx(|| "reading layer")?;
                std::io::Seek::rewind(&mut &file).ctx(|| "reading layer")?;
                if layer.media_type.is_empty() {
                    job.compression = Compression::sniff(&head[..n]);
                }
            }
            return tokio::task::spawn_blocking(move || {
                ingest::run(
                    &content,
                    std::io::BufReader::with_capacity(256 << 10, file),
                    &job,
                )
            })
            .await
            .map_err(|e| Error::io("unpacking layer", std::io::Error::other(e)))?;
        }
        let Source::Registry(client) = source else {
            return Err(Error::NotFound(format!(
                "layer {} is not stored",
                layer.digest
            )));
        };
        progress(ProgressEvent::LayerStarted {
            digest: layer.digest.clone(),
            size: layer.size,
        });
        let resp = client.blob(&layer.digest).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(32);
        let worker = tokio::task::spawn_blocking(move || {
            ingest::run(&content, ChannelReader::new(rx), &job)
        });
        let mut stream = resp.bytes_stream();
        let mut done = 0u64;
        let mut reported = 0u64;
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(std::io::Error::other);
            if let Ok(b) = &item {
                done += b.len() as u64;
                if done - reported >= 1 << 20 {
                    reported = done;
                    progress(ProgressEvent::LayerProgress {
                        digest: layer.digest.clone(),
                        downloaded: done,
                        size: layer.size,
                    });
                }
            }
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        worker
            .await
            .map_err(|e| Error::io("unpacking layer", std::io::Error::other(e)))??;
        progress(ProgressEvent::LayerDone {
            digest: layer.digest.clone(),
            size: layer.size,
        });
        Ok(())
    }

    // ---- containers ----

    fn container_key(container_id: &str) -> Result<String> {
        if container_id.is_empty()
            || container_id.len() > 100
            || !container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(Error::invalid(
                "container id",
                format!("{container_id:?} must be [A-Za-z0-9_.-], at most 100 bytes"),
            ));
        }
        Ok(format!("ctr-{container_id}"))
    }

    /// A fresh writable root filesystem for a container of `image`: image layers below, a new upper dir on top.
    /// Mount it with [`crate::mount`]; remove it with [`ImageStore::remove_container_rootfs`].
    pub fn prepare_container_rootfs(
        &self,
        container_id: &str,
        image: &Image,
    ) -> Result<Vec<Mount>> {
        let key = Self::container_key(container_id)?;
        if let Some(top) = image.top_snapshot() {
            self.snapshots.stat(top)?;
        }
        self.snapshots.prepare(&key, image.top_snapshot())
    }

    /// The mounts of an existing container rootfs (after a daemon restart, say).
    pub fn container_rootfs_mounts(&self, container_id: &str) -> Result<Vec<Mount>> {
        self.snapshots.mounts(&Self::container_key(container_id)?)
    }

    /// Disk use of a container's writable layer: its upper dir for overlayfs, its whole tree for native.
    pub fn container_rootfs_usage(&self, container_id: &str) -> Result<Usage> {
        self.snapshots.usage(&Self::container_key(container_id)?)
    }

    /// Deletes a container's writable layer (unmount it first). Unknown ids succeed.
    pub fn remove_container_rootfs(&self, container_id: &str) -> Result<()> {
        match self.snapshots.remove(&Self::container_key(container_id)?) {
            Err(Error::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// Disk use of images (content + layer snapshots) and of container writable layers.
    pub fn fs_usage(&self) -> Result<FsUsage> {
        let mut u = FsUsage {
            images: snapshot::dir_usage(&self.root.join("content"))?,
            ..Default::default()
        };
        for info in self.snapshots.list()? {
            // A snapshot can vanish between listing and measuring (a pull commits or a GC removes it).
            let usage = match self.snapshots.usage(&info.key) {
                Err(Error::NotFound(_)) => continue,
                other => other?,
            };
            // `tmp-*` are layers being unpacked: image data, not a container's.
            match info.kind {
                Kind::Committed => u.images += usage,
                _ if info.key.starts_with("tmp-") => u.images += usage,
                _ => u.containers += usage,
            }
        }
        Ok(u)
    }

    // ---- gc ----

    /// Removes blobs and layer snapshots no image (and no container rootfs) needs, and crash leftovers.
    pub async fn gc(&self) -> Result<GcStats> {
        let _g = self.gc_lock.write().await;
        blocking(|| self.gc_locked())
    }

    /// GC proper; the caller holds `gc_lock` exclusively.
    fn gc_locked(&self) -> Result<GcStats> {
        let mut stats = GcStats {
            orphans_removed: self.content.clear_ingest()?,
            ..Default::default()
        };
        let images = self.list()?;
        let mut blobs: HashSet<String> = HashSet::new();
        let mut snaps: HashSet<String> = HashSet::new();
        for i in &images {
            blobs.insert(i.id.clone());
            blobs.insert(i.manifest_digest.clone());
            for d in &i.repo_digests {
                if let Some((_, d)) = d.rsplit_once('@') {
                    blobs.insert(d.to_string());
                }
            }
            for l in &i.layers {
                blobs.insert(l.digest.clone());
                snaps.insert(l.chain_id.clone());
            }
        }
        let all = self.snapshots.list()?;
        let by_key: HashMap<&str, &snapshot::Info> =
            all.iter().map(|i| (i.key.as_str(), i)).collect();
        // Containers' writable layers are the daemon's to remove; keep them and everything under them.
        for info in all
            .iter()
            .filter(|i| i.kind != Kind::Committed && !i.key.starts_with("tmp-"))
        {
            snaps.insert(info.key.clone());
            let mut p = info.parent.clone();
            while let Some(k) = p {
                p = by_key.get(k.as_str()).and_then(|i| i.parent.clone());
                if !snaps.insert(k) {
                    break;
                }
            }
        }
        let root = self.root.join("snapshots");
        stats.orphans_removed += snapshot::Snapshots::open(&root)?.clear_orphans()?;
        let s = snapshot::Snapshots::open(&root)?;
        for info in &all {
            if !snaps.contains(&info.key) {
                s.remove_unchecked(&info.key)?;
                stats.snapshots_removed += 1;
            }
        }
        for d in self.content.list()? {
            if !blobs.contains(&d) {
                self.content.delete(&d)?;
                stats.blobs_removed += 1;
            }
        }
        if stats != GcStats::default() {
            tracing::info!(?stats, "image gc");
        }
        Ok(stats)
    }
}

/// Where a pull or import reads layer bytes from.
pub(crate) enum Source {
    Registry(Arc<Client>),
    /// Already in the content store.
    Local,
    /// A directory of blobs named by hex digest (an unpacked archive).
    Dir(PathBuf),
}

pub(crate) struct Names {
    pub tags: Vec<String>,
    pub digests: Vec<String>,
}

impl ImageStore {
    /// Used by import: records an image whose content sits in `source`.
    pub(crate) async fn add_local(
        &self,
        manifest: &Manifest,
        manifest_digest: &str,
        config: &[u8],
        names: Names,
        source: Source,
        what: &str,
    ) -> Result<Image> {
        let image = self.describe(manifest, manifest_digest, config, &what)?;
        let progress: Progress = Arc::new(|_| {});
        self.ensure_layers(&image, &source, &progress).await?;
        self.finish(image, names)
    }

    pub(crate) fn platform(&self) -> &Platform {
        &self.platform
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_follows_containerd() {
        let mut img = Image {
            id: String::new(),
            repo_tags: vec![],
            repo_digests: vec![],
            manifest_digest: String::new(),
            size: 0,
            layers: vec![],
            os: "linux".into(),
            architecture: "amd64".into(),
            config: RuntimeConfig::default(),
        };
        assert_eq!(img.user(), (None, None));
        for (u, want) in [
            ("1000", (Some(1000), None)),
            ("1000:50", (Some(1000), None)),
            ("berth:staff", (None, Some("berth".to_string()))),
        ] {
            img.config.user = Some(u.into());
            assert_eq!(img.user(), want, "{u}");
        }
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let c = chain_ids(&[d('a'), d('b')]);
        assert_eq!(c[0], d('a'));
        assert_eq!(
            c[1],
            sha256_digest(format!("{} {}", d('a'), d('b')).as_bytes())
        );
    }

    /// The daemon spawns pulls and imports on its runtime: their futures must be `Send`.
    #[allow(dead_code)]
    fn futures_are_send(store: &'static ImageStore, r: &'static Reference, p: &'static Path) {
        fn send<T: Send>(_: T) {}
        send(store.pull(r, None, |_| {}));
        send(store.import(p));
        send(store.remove("x"));
        send(store.gc());
    }
}
