//! The CRI v1 daemon: translates kubelet requests into calls on the snapshotter, runtime and CNI crates.

/// Bindings generated from `proto/api.proto` (CRI v1 as of cri-api v0.36).
pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("runtime.v1");
}
