//! One error type for the crate, built from one `thiserror` enum per kernel concern.
//!
//! Callers match on [`Error`] to tell "no such container" from "the kernel refused"; the per-area enums keep the
//! context (which path, which syscall) in the message so a person can act on it.

use std::io;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from reading and writing a container's state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("invalid container id {0:?}: use letters, digits, '-', '_', '.' and no leading dot")]
    InvalidId(String),
    #[error("container {id} is {status}, {action} needs it {need}")]
    WrongStatus {
        id: String,
        status: String,
        action: &'static str,
        need: &'static str,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("corrupt state file {path}: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Errors from the bundle's `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("load {path}: {source}")]
    Load {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("invalid spec: {0}")]
    Invalid(String),
}

/// Errors from cgroupfs (v1, v2 and the hybrid layout).
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy mounted (read /proc/self/mountinfo)")]
    NoHierarchy,
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("unsupported cgroup setting: {0}")]
    Unsupported(String),
}

/// Errors from the namespace, rootfs and process setup of a container or exec process.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{op}: {source}")]
    Sys { op: String, source: nix::Error },
    #[error("{op}: {source}")]
    Io { op: String, source: io::Error },
    #[error("{0}")]
    Invalid(String),
    /// The child reported a failure over the sync socket; the message is its own.
    #[error("container init: {0}")]
    Child(String),
}

/// Errors from translating `linux.seccomp` into a BPF filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: {0}")]
    Build(String),
    #[error("seccomp: unknown syscall {0}")]
    UnknownSyscall(String),
}

/// Errors from running OCI hooks.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook {path}: {source}")]
    Spawn { path: PathBuf, source: io::Error },
    #[error("hook {path} exited with {status}")]
    Failed { path: PathBuf, status: String },
    #[error("hook {path} timed out after {secs}s")]
    Timeout { path: PathBuf, secs: i64 },
}

/// Errors from the per-container monitor and its client side.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("monitor: {0}")]
    Failed(String),
    #[error("monitor {what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("monitor protocol: {0}")]
    Protocol(String),
}

/// Errors from an external runtime (runc, crun) driven through its command line.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("run {binary} {args}: {source}")]
    Spawn {
        binary: PathBuf,
        args: String,
        source: io::Error,
    },
    #[error("{binary} {args} failed ({status}): {stderr}")]
    Failed {
        binary: PathBuf,
        args: String,
        status: String,
        stderr: String,
    },
}

/// The crate's error: one variant per area.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error(transparent)]
    External(#[from] ExternalError),
    /// A feature the spec asks for that this runtime does not implement yet.
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Error {
    /// True when the error means the container is unknown (the daemon maps this to NotFound).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::State(StateError::NotFound(_)))
    }
}

/// Shorthand for a failed syscall in setup code.
pub(crate) fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> SetupError {
    let op = op.into();
    move |source| SetupError::Sys { op, source }
}

/// Shorthand for a failed I/O call in setup code.
pub(crate) fn io(op: impl Into<String>) -> impl FnOnce(io::Error) -> SetupError {
    let op = op.into();
    move |source| SetupError::Io { op, source }
}
