//! In-memory OCI / Docker schema-2 images: layers, configs, manifests and indexes, as real bytes.

use std::io::Write as _;
use std::sync::OnceLock;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::Result;

/// Layers get this mtime unless told otherwise, so equal trees give equal digests (shared-layer tests need that).
pub const DEFAULT_MTIME: u64 = 1_700_000_000;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Which manifest family to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    /// Docker schema 2 (`application/vnd.docker.distribution.manifest.v2+json`). Zstd layers still get the OCI zstd
    /// media type, as Docker itself does.
    Docker,
}

/// Content-addressed bytes with the media type a descriptor of them carries.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    /// The descriptor JSON pointing at this blob.
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size()})
    }
}

/// A built layer: the (possibly compressed) blob and the digest of its uncompressed tar (the diff_id).
#[derive(Clone, Debug)]
pub struct Layer {
    pub compressed: Vec<u8>,
    pub compression: Compression,
    pub digest: String,
    pub diff_id: String,
    /// The uncompressed tar, handy for archive writers and assertions.
    pub tar: Vec<u8>,
}

impl Layer {
    pub fn media_type(&self, format: Format) -> &'static str {
        match (format, self.compression) {
            (Format::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (Format::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (_, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Format::Docker, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
            (Format::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
        }
    }
    pub fn size(&self) -> u64 {
        self.compressed.len() as u64
    }
}

/// A tar entry written byte for byte, bypassing the `tar` crate's path sanitising: for hostile-layer tests
/// (`../escape`, `/abs`, links pointing anywhere).
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub path: Vec<u8>,
    pub kind: tar::EntryType,
    pub link: Option<Vec<u8>>,
    pub data: Vec<u8>,
    pub mode: u32,
}

impl RawEntry {
    pub fn file(path: &str, data: &[u8]) -> RawEntry {
        RawEntry {
            path: path.into(),
            kind: tar::EntryType::Regular,
            link: None,
            data: data.to_vec(),
            mode: 0o644,
        }
    }
    pub fn symlink(path: &str, target: &str) -> RawEntry {
        RawEntry {
            path: path.into(),
            kind: tar::EntryType::Symlink,
            link: Some(target.into()),
            data: vec![],
            mode: 0o777,
        }
    }
    pub fn hardlink(path: &str, target: &str) -> RawEntry {
        RawEntry {
            path: path.into(),
            kind: tar::EntryType::Link,
            link: Some(target.into()),
            data: vec![],
            mode: 0o644,
        }
    }
    pub fn dir(path: &str) -> RawEntry {
        RawEntry {
            path: path.into(),
            kind: tar::EntryType::Directory,
            link: None,
            data: vec![],
            mode: 0o755,
        }
    }
}

#[derive(Clone, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
    CharDevice(u32, u32),
    Fifo,
}

#[derive(Clone, Debug)]
struct Node {
    path: String,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug)]
enum Item {
    Node(Node),
    Raw(RawEntry),
}

/// Builds one layer from an in-memory file tree, entries in the order added.
#[derive(Clone, Debug, Default)]
pub struct LayerBuilder {
    items: Vec<Item>,
    mtime: Option<u64>,
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder::default()
    }

    /// mtime for the entries added after this call.
    pub fn mtime(mut self, secs: u64) -> Self {
        self.mtime = Some(secs);
        self
    }

    fn push(mut self, path: &str, kind: Kind, mode: u32) -> Self {
        let mtime = self.mtime.unwrap_or(DEFAULT_MTIME);
        let path = path.trim_start_matches('/').to_string();
        self.items.push(Item::Node(Node {
            path,
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: vec![],
        }));
        self
    }

    fn last_node(&mut self) -> Option<&mut Node> {
        match self.items.last_mut() {
            Some(Item::Node(n)) => Some(n),
            _ => None,
        }
    }

    pub fn file(self, path: &str, data: impl AsRef<[u8]>) -> Self {
        self.push(path, Kind::File(data.as_ref().to_vec()), 0o644)
    }
    pub fn file_mode(self, path: &str, data: impl AsRef<[u8]>, mode: u32) -> Self {
        self.push(path, Kind::File(data.as_ref().to_vec()), mode)
    }
    pub fn dir(self, path: &str) -> Self {
        self.push(path, Kind::Dir, 0o755)
    }
    pub fn dir_mode(self, path: &str, mode: u32) -> Self {
        self.push(path, Kind::Dir, mode)
    }
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.push(path, Kind::Symlink(target.to_string()), 0o777)
    }
    /// A hardlink at `path` to the earlier entry `target` (archive-relative).
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.push(
            path,
            Kind::Hardlink(target.trim_start_matches('/').to_string()),
            0o644,
        )
    }
    pub fn char_device(self, path: &str, major: u32, minor: u32) -> Self {
        self.push(path, Kind::CharDevice(major, minor), 0o666)
    }
    pub fn fifo(self, path: &str) -> Self {
        self.push(path, Kind::Fifo, 0o644)
    }
    /// An OCI whiteout hiding `path` of lower layers (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let path = path.trim_start_matches('/');
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        self.push(&format!("{dir}.wh.{name}"), Kind::File(vec![]), 0o644)
    }
    /// Marks `dir` opaque: lower layers' content under it is hidden (`dir/.wh..wh..opq`).
    pub fn opaque(self, dir: &str) -> Self {
        let dir = dir.trim_matches('/');
        self.push(&format!("{dir}/.wh..wh..opq"), Kind::File(vec![]), 0o644)
    }
    /// Sets the owner of the entry added last.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        if let Some(n) = self.last_node() {
            n.uid = uid;
            n.gid = gid;
        }
        self
    }
    /// Adds an extended attribute (PAX `SCHILY.xattr.`) to the entry added last.
    pub fn xattr(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        if let Some(n) = self.last_node() {
            n.xattrs.push((name.to_string(), value.as_ref().to_vec()));
        }
        self
    }
    /// Appends an entry written verbatim (no path checks).
    pub fn raw(mut self, entry: RawEntry) -> Self {
        self.items.push(Item::Raw(entry));
        self
    }

    /// The uncompressed tar stream.
    pub fn tar(&self) -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        for item in &self.items {
            match item {
                Item::Node(n) => append_node(&mut b, n)?,
                Item::Raw(r) => append_raw(&mut b, r)?,
            }
        }
        Ok(b.into_inner()?)
    }

    pub fn build(&self, compression: Compression) -> Result<Layer> {
        let tar = self.tar()?;
        let compressed = compress(&tar, compression)?;
        Ok(Layer {
            digest: sha256_digest(&compressed),
            diff_id: sha256_digest(&tar),
            compressed,
            compression,
            tar,
        })
    }
}

fn compress(tar: &[u8], compression: Compression) -> Result<Vec<u8>> {
    Ok(match compression {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar)?;
            e.finish()?
        }
        Compression::Zstd => zstd::encode_all(tar, 3)?,
    })
}

fn append_node(b: &mut tar::Builder<Vec<u8>>, n: &Node) -> Result<()> {
    if !n.xattrs.is_empty() {
        let ext: Vec<(String, &[u8])> = n
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        b.append_pax_extensions(ext.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(n.mode);
    h.set_uid(n.uid);
    h.set_gid(n.gid);
    h.set_mtime(n.mtime);
    h.set_size(0);
    match &n.kind {
        Kind::File(data) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, &n.path, data.as_slice())?;
        }
        Kind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(
                &mut h,
                format!("{}/", n.path.trim_end_matches('/')),
                std::io::empty(),
            )?;
        }
        Kind::Symlink(t) => {
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, &n.path, t)?;
        }
        Kind::Hardlink(t) => {
            h.set_entry_type(tar::EntryType::Link);
            b.append_link(&mut h, &n.path, t)?;
        }
        Kind::CharDevice(major, minor) => {
            h.set_entry_type(tar::EntryType::Char);
            h.set_device_major(*major)?;
            h.set_device_minor(*minor)?;
            b.append_data(&mut h, &n.path, std::io::empty())?;
        }
        Kind::Fifo => {
            h.set_entry_type(tar::EntryType::Fifo);
            b.append_data(&mut h, &n.path, std::io::empty())?;
        }
    }
    Ok(())
}

fn append_raw(b: &mut tar::Builder<Vec<u8>>, r: &RawEntry) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().ok_or("not a gnu header")?;
        if r.path.len() > gnu.name.len() {
            return Err("raw entry path longer than 100 bytes".into());
        }
        gnu.name[..r.path.len()].copy_from_slice(&r.path);
        if let Some(link) = &r.link {
            if link.len() > gnu.linkname.len() {
                return Err("raw entry link longer than 100 bytes".into());
            }
            gnu.linkname[..link.len()].copy_from_slice(link);
        }
    }
    h.set_entry_type(r.kind);
    h.set_mode(r.mode);
    h.set_mtime(DEFAULT_MTIME);
    h.set_size(r.data.len() as u64);
    h.set_cksum();
    b.append(&h, r.data.as_slice())?;
    Ok(())
}

/// A complete single-platform image.
#[derive(Clone, Debug)]
pub struct Image {
    pub format: Format,
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Layer>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Image {
    /// The manifest digest (what `name@sha256:` pulls).
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }
    /// The config digest, i.e. the image id.
    pub fn id(&self) -> &str {
        &self.config.digest
    }
    /// Every blob a registry must hold for this image, config first.
    pub fn blobs(&self) -> Vec<(String, &[u8])> {
        let mut v = vec![(self.config.digest.clone(), self.config.bytes.as_slice())];
        v.extend(
            self.layers
                .iter()
                .map(|l| (l.digest.clone(), l.compressed.as_slice())),
        );
        v
    }
}

/// Builds an [`Image`]: layers plus the runtime config fields the CRI cares about.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    format: Format,
    layers: Vec<Layer>,
    config: serde_json::Map<String, Value>,
    os: String,
    architecture: String,
    variant: Option<String>,
    size_override: Vec<(usize, u64)>,
}

impl ImageBuilder {
    pub fn new(format: Format) -> ImageBuilder {
        ImageBuilder {
            format,
            layers: vec![],
            config: serde_json::Map::new(),
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            size_override: vec![],
        }
    }
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }
    pub fn layers(mut self, layers: impl IntoIterator<Item = Layer>) -> Self {
        self.layers.extend(layers);
        self
    }
    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> Self {
        self.os = os.into();
        self.architecture = architecture.into();
        self.variant = variant.map(str::to_string);
        self
    }
    fn set(mut self, key: &str, v: Value) -> Self {
        self.config.insert(key.into(), v);
        self
    }
    pub fn env(self, env: &[&str]) -> Self {
        self.set("Env", json!(env))
    }
    pub fn entrypoint(self, argv: &[&str]) -> Self {
        self.set("Entrypoint", json!(argv))
    }
    pub fn cmd(self, argv: &[&str]) -> Self {
        self.set("Cmd", json!(argv))
    }
    pub fn working_dir(self, dir: &str) -> Self {
        self.set("WorkingDir", json!(dir))
    }
    pub fn user(self, user: &str) -> Self {
        self.set("User", json!(user))
    }
    pub fn stop_signal(self, sig: &str) -> Self {
        self.set("StopSignal", json!(sig))
    }
    pub fn volumes(self, paths: &[&str]) -> Self {
        let m: serde_json::Map<String, Value> =
            paths.iter().map(|p| (p.to_string(), json!({}))).collect();
        self.set("Volumes", Value::Object(m))
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        let labels = self.config.entry("Labels").or_insert_with(|| json!({}));
        if let Some(m) = labels.as_object_mut() {
            m.insert(k.into(), json!(v));
        }
        self
    }
    /// Lies about layer `index`'s size in the manifest (negative tests).
    pub fn wrong_layer_size(mut self, index: usize, size: u64) -> Self {
        self.size_override.push((index, size));
        self
    }

    pub fn build(self) -> Result<Image> {
        let diff_ids: Vec<&str> = self.layers.iter().map(|l| l.diff_id.as_str()).collect();
        let mut config = json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": self.architecture,
            "os": self.os,
            "config": Value::Object(self.config.clone()),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": self.layers.iter().map(|_| json!({"created_by": "berth-testkit"})).collect::<Vec<_>>(),
        });
        if let Some(v) = &self.variant {
            config["variant"] = json!(v);
        }
        let (manifest_type, config_type) = match self.format {
            Format::Oci => (
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.config.v1+json",
            ),
            Format::Docker => (
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json",
            ),
        };
        let config = Blob::new(config_type, serde_json::to_vec(&config)?);
        let layers: Vec<Value> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let size = self
                    .size_override
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map(|(_, s)| *s)
                    .unwrap_or(l.size());
                json!({"mediaType": l.media_type(self.format), "digest": l.digest, "size": size})
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config.descriptor(),
            "layers": layers,
        });
        Ok(Image {
            format: self.format,
            manifest: Blob::new(manifest_type, serde_json::to_vec(&manifest)?),
            config,
            layers: self.layers,
            os: self.os,
            architecture: self.architecture,
            variant: self.variant,
        })
    }
}

/// A multi-platform image index (OCI) or manifest list (Docker).
#[derive(Clone, Debug)]
pub struct Index {
    pub manifest: Blob,
    pub images: Vec<Image>,
}

impl Index {
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }
}

#[derive(Clone, Debug)]
pub struct IndexBuilder {
    format: Format,
    images: Vec<Image>,
}

impl IndexBuilder {
    pub fn new(format: Format) -> IndexBuilder {
        IndexBuilder {
            format,
            images: vec![],
        }
    }
    pub fn image(mut self, image: Image) -> Self {
        self.images.push(image);
        self
    }
    pub fn build(self) -> Result<Index> {
        let media_type = match self.format {
            Format::Oci => "application/vnd.oci.image.index.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        };
        let manifests: Vec<Value> = self
            .images
            .iter()
            .map(|img| {
                let mut d = img.manifest.descriptor();
                d["platform"] = json!({"os": img.os, "architecture": img.architecture});
                if let Some(v) = &img.variant {
                    d["platform"]["variant"] = json!(v);
                }
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
        Ok(Index {
            manifest: Blob::new(media_type, serde_json::to_vec(&index)?),
            images: self.images,
        })
    }
}

/// Users every busybox image knows: root, nobody and `berth` (uid 1000).
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nberth:x:1000:1000:berth:/home/berth:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
pub const GROUP: &str = "root:x:0:\nberth:x:1000:\nnogroup:x:65534:\n";

/// The two base layers of [`busybox`] (gzip): `/bin/busybox` with its applet symlinks, then `/etc`, `/tmp`, homes.
/// Build other images on them to get images that share base layers.
pub fn busybox_base_layers() -> Vec<Layer> {
    static LAYERS: OnceLock<Vec<Layer>> = OnceLock::new();
    LAYERS
        .get_or_init(|| {
            build_busybox_layers().unwrap_or_else(|e| {
                panic!("cannot build busybox layers (apt-get install busybox-static): {e}")
            })
        })
        .clone()
}

fn build_busybox_layers() -> Result<Vec<Layer>> {
    let binary = std::fs::read("/bin/busybox")?;
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()?;
    let mut bin = LayerBuilder::new()
        .dir("bin")
        .file_mode("bin/busybox", binary, 0o755);
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            bin = bin.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    let etc = LayerBuilder::new()
        .dir("etc")
        .file("etc/passwd", PASSWD)
        .file("etc/group", GROUP)
        .dir_mode("tmp", 0o1777)
        .dir_mode("root", 0o700)
        .dir("home")
        .dir("home/berth")
        .owner(1000, 1000)
        .dir("proc")
        .dir("sys")
        .dir("dev");
    Ok(vec![
        bin.build(Compression::Gzip)?,
        etc.build(Compression::Gzip)?,
    ])
}

/// A runnable OCI image: busybox-static with applets in /bin, users root/nobody/berth, `Cmd ["sh"]`.
pub fn busybox() -> Image {
    ImageBuilder::new(Format::Oci)
        .layers(busybox_base_layers())
        .env(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
        .cmd(&["sh"])
        .build()
        .unwrap_or_else(|e| panic!("cannot build busybox image: {e}"))
}
