//! Images and storage: OCI registries, the content store, layer unpacking and snapshot drivers.
//!
//! Speaks the OCI image-spec and distribution-spec at its edge and knows nothing of the CRI.

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
pub use snapshot::{Mount, Snapshotter, SnapshotterKind, Usage};
pub use snapshot::{mount_all as mount, unmount};
pub use store::{FsUsage, GcStats, Image, ImageStore, Layer, ProgressEvent, chain_ids};
