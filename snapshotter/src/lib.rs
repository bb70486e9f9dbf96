//! Images and storage for Berth: OCI registries, the content store, layer unpacking and snapshot drivers.
//!
//! Speaks the OCI image-spec and distribution-spec at its edge and knows nothing of the CRI; the daemon (`cri`)
//! translates. Everything hangs off one [`ImageStore`]:
//!
//! ```no_run
//! # async fn demo(db: std::sync::Arc<redb::Database>) -> berth_snapshotter::Result<()> {
//! use berth_snapshotter::*;
//! let config: RegistryConfig = Default::default(); // or deserialised from the daemon's TOML
//! let store = ImageStore::open("/var/lib/berth".as_ref(), config, SnapshotterKind::Overlayfs, db).await?;
//!
//! // PullImage: progress events drive `berth image pull`'s display.
//! let image = store.pull(&Reference::parse("busybox")?, None, |_ev: ProgressEvent| {}).await?;
//! // image.id (config digest) is PullImageResponse.image_ref, Image.id and ContainerStatus.image_id.
//!
//! // ListImages / ImageStatus / RemoveImage / ImageFsInfo
//! let all = store.list()?;
//! let same = store.get("docker.io/library/busybox:latest")?; // also by id, id prefix, or repo@digest
//! let (uid, username) = same.user();
//! let raw_config = store.config_json(&same)?; // ImageStatus verbose info
//! let usage = store.fs_usage()?; // .images -> image_filesystems, .containers -> container_filesystems
//! store.remove("busybox").await?; // untags if the image has other tags, else removes it; GC follows
//!
//! // CreateContainer: a writable rootfs over the image layers.
//! let mounts = store.prepare_container_rootfs("ctr-id", &image)?;
//! mount(&mounts, "/run/berth/containers/ctr-id/rootfs".as_ref())?; // in the container's mount ns, or host
//! // RemoveContainer: unmount(target), then
//! store.remove_container_rootfs("ctr-id")?;
//!
//! // `berth image import FILE`: OCI layout or `docker save` tar.
//! let imported = store.import("/tmp/images.tar".as_ref()).await?;
//! # Ok(()) }
//! ```
//!
//! # Pieces
//! * [`Reference`]: `busybox` → `docker.io/library/busybox:latest`, tags, digests, `host:port/` registries.
//! * [`RegistryConfig`] / [`HostConfig`]: per registry host, `mirrors` (tried in order), `server` (replaces the
//!   upstream, which is then never contacted), `insecure` (plain http; loopback hosts always get http).
//!   [`Auth`] carries the CRI `AuthConfig` fields (username/password, base64 `auth`, identity token, registry token).
//! * Pull: manifests (OCI, Docker schema 2, indexes and manifest lists, resolved to [`Platform::host`]), anonymous
//!   bearer / basic / token auth, layers downloaded up to 4 at once and unpacked while they stream, each blob
//!   checked against digest and size (and each layer against its diff_id) before it is renamed into
//!   `content/blobs/sha256/`. Concurrent pulls of one image or layer do the work once. The image record is written
//!   last, in one DB transaction, so a killed pull never leaves a visible half image; a failed pull garbage-collects
//!   what it fetched.
//! * Unpack ([`unpack`]): all path resolution is ours (`openat2` with `RESOLVE_BENEATH`); entries with `..`,
//!   absolute paths, or that would write through a symlink or hardlink leading outside the snapshot fail the pull
//!   with [`Error::HostileLayer`]. Ownership, modes (setuid), xattrs, hardlinks, symlinks, devices and mtimes kept.
//! * Snapshots ([`snapshot`]): one directory per layer under `snapshots/<chain-id>/fs`, shared by every image that
//!   holds it. [`SnapshotterKind::Overlayfs`] (default) stacks layers with overlayfs;
//!   [`SnapshotterKind::Native`] copies. [`mount`] uses the new mount API so 128+ layer images mount.
//! * GC ([`ImageStore::gc`], also run by `open` and `remove`): drops blobs and layer snapshots no image or
//!   container rootfs needs, plus crash leftovers (ingest files, half-built snapshot dirs).
//!
//! # Storage and DB
//! Under the root: `content/blobs/sha256/<hex>`, `content/ingest/` (temp), `snapshots/<id>/{fs,work,info.json}`.
//! Image records live in the shared redb database in the table `images.by_id` (JSON values); the daemon owns the
//! database file and its other tables.
//!
//! # Blocking
//! `pull`, `import`, `remove` and `gc` are async and keep heavy filesystem work off the runtime's workers. The sync
//! methods (`list`, `get`, `fs_usage`, `prepare_container_rootfs`, `remove_container_rootfs`, [`mount`]) touch the
//! disk directly: `fs_usage` walks container layers and the native driver's `prepare_container_rootfs` copies the
//! whole image, so call those from `spawn_blocking`.
//!
//! # Limits (typed errors, not silent misbehaviour)
//! * Hardlinks from one layer to a file of a lower layer: [`Error::Unsupported`] (layers unpack independently).
//! * Docker schema-1 manifests, encrypted layers, non-sha256 digests, nested indexes: [`Error::Unsupported`].
//! * `insecure` means plain http for host names without a scheme; write `https://host` in `server`/`mirrors` to
//!   get https with certificate checks skipped instead.
//! * Committed snapshots belong to images: GC removes any no image (or container rootfs) needs. Active snapshots and
//!   views (container rootfs, `ctr-*`) are never collected; remove them with `remove_container_rootfs`.
//!
//! # Errors
//! [`Error`] variants map to CRI status codes: `NotFound` → NOT_FOUND, `InvalidReference`/`Invalid` →
//! INVALID_ARGUMENT, `Unauthorized` → UNAUTHENTICATED (or PERMISSION_DENIED), `InUse` → FAILED_PRECONDITION,
//! `Unreachable` → UNAVAILABLE, `Unsupported` → UNIMPLEMENTED/INVALID_ARGUMENT, the rest → INTERNAL. Messages are
//! lowercase and say what went wrong where.

pub mod config;
pub mod content;
pub mod error;
mod import;
mod ingest;
pub mod reference;
pub mod registry;
pub mod snapshot;
mod store;
pub mod unpack;

pub use config::{Auth, HostConfig, RegistryConfig};
pub use error::{Error, Result};
pub use reference::Reference;
pub use registry::manifest::{Platform, RuntimeConfig};
pub use snapshot::{Mount, Snapshotter, SnapshotterKind, Usage, mount_all as mount, unmount};
pub use store::{FsUsage, GcStats, Image, ImageStore, Layer, ProgressEvent, chain_ids};
