//! Images and storage: OCI registries, the content store, layer unpacking and snapshot drivers.
//!
//! Speaks the OCI image-spec and distribution-spec at its edge and knows nothing of the CRI.
