//! Berth's daemon crate: the CRI v1 edge of a container runtime.
//!
//! Requests flow one way: [`server`] (tonic services, the only code that knows gRPC status codes) calls into the
//! snapshotter, runtime and CNI crates, which call the kernel. [`config`] is the one TOML file, [`store`] the
//! metadata database, [`host`] what the machine offers, [`daemon`] the socket's lifecycle and [`client`] a CRI
//! client over the socket for the CLI and tests.

/// Bindings generated from `proto/api.proto` (CRI v1 as of cri-api v0.36).
pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

/// Berth's own service beside the CRI (`proto/berth.proto`): pull progress and image import for the CLI.
pub mod admin {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("berth.v1");
}

pub mod client;
pub mod config;
pub mod daemon;
pub mod host;
pub mod server;
pub mod store;
