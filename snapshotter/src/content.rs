//! The content store: blobs by digest under `content/blobs/sha256/<hex>`.
//!
//! A blob becomes visible only by `rename` from `content/ingest/` after its digest and size were checked, so a
//! reader never sees partial or unverified bytes, and a crash leaves at most an ingest file (removed at start-up).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::reference::is_valid_digest;

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

pub(crate) struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    pub(crate) fn open(root: &Path) -> Result<ContentStore> {
        let blobs = root.join("blobs/sha256");
        let ingest = root.join("ingest");
        fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;
        fs::create_dir_all(&ingest).ctx(|| format!("creating {}", ingest.display()))?;
        Ok(ContentStore { blobs, ingest })
    }

    pub(crate) fn path(&self, digest: &str) -> Result<PathBuf> {
        if !is_valid_digest(digest) {
            return Err(Error::invalid(
                "digest",
                format!("{digest:?} is not sha256:<64 hex>"),
            ));
        }
        Ok(self.blobs.join(&digest["sha256:".len()..]))
    }

    pub(crate) fn has(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.exists())
    }

    pub(crate) fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.path(digest)?;
        fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(format!("blob {digest}")),
            _ => Error::io(format!("reading {}", p.display()), e),
        })
    }

    pub(crate) fn open_blob(&self, digest: &str) -> Result<File> {
        let p = self.path(digest)?;
        File::open(&p).ctx(|| format!("opening {}", p.display()))
    }

    /// Stores bytes already in memory after checking them against `digest` and `size`.
    pub(crate) fn write_verified(
        &self,
        what: &str,
        bytes: &[u8],
        digest: &str,
        size: Option<u64>,
    ) -> Result<()> {
        if let Some(size) = size
            && size != bytes.len() as u64
        {
            return Err(Error::SizeMismatch {
                what: what.into(),
                expected: size,
                actual: bytes.len() as u64,
            });
        }
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: what.into(),
                expected: digest.into(),
                actual,
            });
        }
        if self.has(digest) {
            return Ok(());
        }
        let (mut f, tmp) = self.ingest_file()?;
        f.write_all(bytes)
            .ctx(|| format!("writing {}", tmp.display()))?;
        self.commit(f, &tmp, digest)
    }

    /// A fresh temp file for a blob being downloaded.
    pub(crate) fn ingest_file(&self) -> Result<(File, PathBuf)> {
        let f = tempfile_in(&self.ingest)?;
        Ok(f)
    }

    /// Makes a verified ingest file visible under `digest`.
    pub(crate) fn commit(&self, f: File, tmp: &Path, digest: &str) -> Result<()> {
        f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
        drop(f);
        let dst = self.path(digest)?;
        fs::rename(tmp, &dst).ctx(|| format!("renaming {} to {}", tmp.display(), dst.display()))
    }

    pub(crate) fn delete(&self, digest: &str) -> Result<()> {
        let p = self.path(digest)?;
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing {}", p.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Every stored digest.
    pub(crate) fn list(&self) -> Result<Vec<String>> {
        let mut v = vec![];
        for e in fs::read_dir(&self.blobs).ctx(|| format!("listing {}", self.blobs.display()))? {
            let e = e.ctx(|| "listing blobs")?;
            let d = format!("sha256:{}", e.file_name().to_string_lossy());
            if is_valid_digest(&d) {
                v.push(d);
            }
        }
        Ok(v)
    }

    /// Removes every ingest file: called at open, when no download can be running.
    pub(crate) fn clear_ingest(&self) -> Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(&self.ingest).ctx(|| "listing ingest dir")? {
            let e = e.ctx(|| "listing ingest dir")?;
            let _ = fs::remove_file(e.path()).or_else(|_| fs::remove_dir_all(e.path()));
            n += 1;
        }
        Ok(n)
    }

    pub(crate) fn ingest_dir(&self) -> &Path {
        &self.ingest
    }
}

/// Creates a uniquely named file in `dir` (O_EXCL).
pub(crate) fn tempfile_in(dir: &Path) -> Result<(File, PathBuf)> {
    for _ in 0..16 {
        let p = dir.join(format!("tmp-{}", unique_suffix()));
        match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((f, p)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating {}", p.display()), e)),
        }
    }
    Err(Error::io(
        format!("creating a temp file in {}", dir.display()),
        io::Error::other("name collisions"),
    ))
}

/// Process-unique, time-salted suffix for temp names.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        t % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Hashes and counts everything read through it, and optionally copies it to a file; refuses to read past `limit`.
pub(crate) struct Verifier<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: Option<u64>,
    copy: Option<io::BufWriter<File>>,
}

impl<R: Read> Verifier<R> {
    pub(crate) fn new(inner: R, limit: Option<u64>, copy: Option<File>) -> Self {
        Verifier {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
            copy: copy.map(|f| io::BufWriter::with_capacity(256 << 10, f)),
        }
    }

    /// Reads the rest of the stream, so the digest covers all of it.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// (digest, byte count, the copy's file flushed).
    pub(crate) fn finish(self) -> io::Result<(String, u64, Option<File>)> {
        let file = match self.copy {
            Some(w) => Some(w.into_inner().map_err(|e| e.into_error())?),
            None => None,
        };
        Ok((
            format!("sha256:{:x}", self.hasher.finalize()),
            self.count,
            file,
        ))
    }
}

/// Marks the io error we raise when a stream runs past its descriptor's size.
#[derive(Debug)]
pub(crate) struct TooLong;
impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blob is longer than its descriptor says")
    }
}
impl std::error::Error for TooLong {}

impl<R: Read> Read for Verifier<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if let Some(limit) = self.limit
            && self.count > limit
        {
            return Err(io::Error::other(TooLong));
        }
        self.hasher.update(&buf[..n]);
        if let Some(w) = &mut self.copy {
            w.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}
