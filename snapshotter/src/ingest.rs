//! The blocking half of a layer download: verify, store and unpack one byte stream in a single pass.
//!
//! The compressed bytes flow through a [`Verifier`] (sha256 + size limit + copy into an ingest file), then the
//! decompressor, then a diff-id hasher, then the tar unpacker. Whatever happens, the rest of the stream is drained
//! through the verifier so a corrupt blob is reported as a digest mismatch rather than as the gzip or tar error it
//! caused. The blob is renamed into the content store only when digest, size and diff-id all match; the caller
//! commits the snapshot only when this returns `Ok`.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use crate::content::{ContentStore, TooLong, Verifier};
use crate::error::{Error, Result};
use crate::unpack::{Whiteouts, unpack};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(crate) fn from_media_type(mt: &str) -> Result<Compression> {
        if mt.contains("encrypted") {
            return Err(Error::Unsupported(format!("encrypted layers ({mt})")));
        }
        if mt.ends_with("gzip") {
            Ok(Compression::Gzip)
        } else if mt.ends_with("zstd") {
            Ok(Compression::Zstd)
        } else if mt.ends_with(".tar") || mt.ends_with(".v1.tar") || mt.is_empty() {
            Ok(Compression::None)
        } else {
            Err(Error::Unsupported(format!("layer media type {mt}")))
        }
    }

    /// From the first bytes of a blob, for archives that do not say.
    pub(crate) fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Reads chunks sent by the async download task.
pub(crate) struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What to check and where to put a layer.
pub(crate) struct LayerJob {
    pub name: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    pub compression: Compression,
    /// Copy the compressed bytes into the content store (false when reading from it).
    pub store_blob: bool,
    /// Unpack into this dir with these whiteout rules.
    pub unpack_into: Option<(PathBuf, Whiteouts)>,
}

fn decode_error(job: &LayerJob, e: io::Error) -> Error {
    Error::invalid(format!("layer {}", job.name), e)
}

/// Runs `job` over `source`. Blocking: call from `spawn_blocking`.
pub(crate) fn run(content: &ContentStore, source: impl Read, job: &LayerJob) -> Result<()> {
    let ingest = if job.store_blob {
        Some(content.ingest_file()?)
    } else {
        None
    };
    let (copy, tmp_path): (Option<File>, Option<PathBuf>) = match ingest {
        Some((f, p)) => (Some(f), Some(p)),
        None => (None, None),
    };
    let outcome = run_inner(content, source, job, copy, tmp_path.as_deref());
    if outcome.is_err()
        && let Some(p) = &tmp_path
    {
        let _ = std::fs::remove_file(p);
    }
    outcome
}

fn run_inner(
    content: &ContentStore,
    source: impl Read,
    job: &LayerJob,
    copy: Option<File>,
    tmp: Option<&Path>,
) -> Result<()> {
    let mut verifier = Verifier::new(source, Some(job.size), copy);
    let unpacked: Result<()> = (|| {
        let decoded: Box<dyn Read + '_> = match job.compression {
            Compression::None => Box::new(&mut verifier),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut verifier)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(&mut verifier)
                    .map_err(|e| decode_error(job, e))?,
            ),
        };
        let mut diff = HashReader {
            inner: decoded,
            hasher: Sha256::new(),
        };
        if let Some((dir, wh)) = &job.unpack_into {
            unpack(&mut diff, dir, *wh, &job.name)?;
        }
        io::copy(&mut diff, &mut io::sink()).map_err(|e| decode_error(job, e))?;
        let actual = format!("sha256:{:x}", diff.hasher.finalize());
        if actual != job.diff_id {
            return Err(Error::DigestMismatch {
                what: format!("uncompressed layer {} (diff_id)", job.name),
                expected: job.diff_id.clone(),
                actual,
            });
        }
        Ok(())
    })();
    let drained = verifier.drain();
    let too_long = verifier.count() > job.size
        || drained
            .as_ref()
            .err()
            .and_then(|e| e.get_ref())
            .is_some_and(|e| e.is::<TooLong>());
    if too_long {
        return Err(Error::SizeMismatch {
            what: format!("layer {}", job.name),
            expected: job.size,
            actual: verifier.count(),
        });
    }
    let (digest, count, file) = verifier
        .finish()
        .map_err(|e| Error::io("writing blob", e))?;
    if let Err(e) = drained {
        // The transfer itself broke (network, disk): that explains any decode error too.
        return Err(Error::io(format!("downloading layer {}", job.name), e));
    }
    if count != job.size {
        return Err(Error::SizeMismatch {
            what: format!("layer {}", job.name),
            expected: job.size,
            actual: count,
        });
    }
    if digest != job.digest {
        return Err(Error::DigestMismatch {
            what: format!("layer {}", job.name),
            expected: job.digest.clone(),
            actual: digest,
        });
    }
    unpacked?;
    if let (Some(f), Some(tmp)) = (file, tmp) {
        content.commit(f, tmp, &job.digest)?;
    }
    Ok(())
}
