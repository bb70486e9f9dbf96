//! CRI log format: `<RFC3339Nano> <stdout|stderr> <P|F> <text>\n`, one entry per line of output.
//!
//! A line is `F` (full) when its newline was read; whatever a read ends with that has no newline yet is written at
//! once as a `P` (partial) entry, so nothing waits in the monitor's memory and long lines need no big buffer. The
//! kubelet joins `P` entries up to the next `F`: the output is recovered byte for byte.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::util::{now_nanos, rfc3339_into};

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

/// Append-only CRI log file that can be reopened after rotation.
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    out: Vec<u8>,
}

impl LogWriter {
    /// Open (create) the log at `path`; an empty path discards output.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut w = LogWriter {
            path: path.to_path_buf(),
            file: None,
            out: Vec::new(),
        };
        w.reopen()?;
        Ok(w)
    }

    /// Reopen the file by path (the old one may have been renamed away by rotation).
    pub fn reopen(&mut self) -> io::Result<()> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)?;
        self.file = Some(f);
        Ok(())
    }

    /// Log one chunk of output read from `stream`.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        self.out.clear();
        encode(&mut self.out, now_nanos(), stream, data);
        file.write_all(&self.out)
    }
}

/// Append the CRI entries for `data` to `out`.
pub fn encode(out: &mut Vec<u8>, nanos: i128, stream: Stream, data: &[u8]) {
    let mut ts = [0u8; 30];
    let n = rfc3339_into(nanos, &mut ts);
    let mut rest = data;
    while !rest.is_empty() {
        let (line, tag, advance) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], b'F', i + 1),
            None => (rest, b'P', rest.len()),
        };
        out.extend_from_slice(&ts[..n]);
        out.push(b' ');
        out.extend_from_slice(stream.name());
        out.push(b' ');
        out.push(tag);
        out.push(b' ');
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = &rest[advance..];
    }
}

/// Rebuild the output of one stream from CRI log text (the inverse of [`encode`]); used by tests and tools.
pub fn decode(log: &[u8], stream: Stream) -> Vec<u8> {
    let mut out = Vec::new();
    for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let (_ts, s, tag, text) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next().unwrap_or(b""),
        );
        if s != Some(stream.name()) {
            continue;
        }
        out.extend_from_slice(text);
        if tag == Some(b"F") {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_full_and_partial() {
        let mut out = Vec::new();
        encode(&mut out, 0, Stream::Stdout, b"a\nbc\nde");
        let ts = "1970-01-01T00:00:00.000000000Z";
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{ts} stdout F a\n{ts} stdout F bc\n{ts} stdout P de\n")
        );
        encode(&mut out, 0, Stream::Stderr, b"\n");
        assert!(String::from_utf8_lossy(&out).ends_with(&format!("{ts} stderr F \n")));
        assert_eq!(decode(&out, Stream::Stdout), b"a\nbc\nde");
        assert_eq!(decode(&out, Stream::Stderr), b"\n");
    }
}
