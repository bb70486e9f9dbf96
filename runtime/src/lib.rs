//! Process isolation: the built-in OCI runtime, the per-container monitor and external handlers.
//!
//! Speaks the OCI runtime-spec at its edge (a bundle in, a monitored process out) and knows nothing of the CRI.

pub mod capabilities;
pub mod cgroups;
pub mod cli;
pub mod container;
pub mod error;
pub mod exec;
pub mod handler;
pub mod hooks;
pub mod monitor;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod state;
pub mod tty;
pub mod util;

pub use error::{Error, Result};
