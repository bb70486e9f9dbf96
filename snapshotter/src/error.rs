//! One error type for the crate; the daemon maps its variants to CRI status codes.

use std::io;

/// Everything that can go wrong in the image store. Messages are lowercase and say what to do where possible.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No image, snapshot or blob by that name.
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// The registry refused our credentials (or demanded some we do not have).
    #[error("unauthorized by registry {registry}: {detail}")]
    Unauthorized { registry: String, detail: String },
    /// Content did not hash to the digest its descriptor names.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// Content was longer or shorter than its descriptor says.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// A layer tried to write outside its snapshot directory; nothing outside was written.
    #[error("hostile layer {layer}: {detail}; refusing to unpack it")]
    HostileLayer { layer: String, detail: String },
    /// A manifest, config, archive or layer we cannot make sense of.
    #[error("invalid {what}: {detail}")]
    Invalid { what: String, detail: String },
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Something still uses it (a snapshot with children, an image a container runs from).
    #[error("in use: {0}")]
    InUse(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The registry answered with an unexpected HTTP status.
    #[error("registry {registry} answered {status} for {url}: {detail}")]
    Registry {
        registry: String,
        status: u16,
        url: String,
        detail: String,
    },
    /// The registry could not be reached at all.
    #[error("cannot reach registry at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("metadata database: {0}")]
    Db(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn invalid(what: impl Into<String>, detail: impl std::fmt::Display) -> Error {
        Error::Invalid {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
    /// Shorthand for matching [`Error::NotFound`], which callers often treat as success (idempotent removal).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }
}

/// Adds a context string to io results: `fs::read(p).ctx(|| format!("reading {}", p.display()))?`.
pub(crate) trait IoContext<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, io::Error> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
