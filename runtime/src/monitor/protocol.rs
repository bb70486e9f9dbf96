//! The monitor's socket protocol (`<state dir>/attach.sock`, SOCK_STREAM), shared by the monitor and its clients.
//!
//! Every message is a frame: one type byte, a 4-byte big-endian payload length, the payload (at most 1 MiB).
//!
//! | type | direction | payload | meaning |
//! |---|---|---|---|
//! | 1 `STDIN` | client → monitor | bytes | write to the container's stdin |
//! | 2 `CLOSE_STDIN` | client → monitor | — | close the container's stdin (EOF) |
//! | 3 `RESIZE` | client → monitor | rows u16 BE, cols u16 BE | resize the pty |
//! | 4 `REOPEN_LOG` | client → monitor | — | reopen the log file (after rotation) |
//! | 5 `ATTACH` | client → monitor | — | subscribe to the container's output on this connection |
//! | 6 `STDOUT` / 7 `STDERR` | monitor → client | bytes | output, as it is logged |
//! | 8 `EXIT` | monitor → client | i32 BE | the container exited (code, or 128+signal) |
//! | 9 `ACK` | monitor → client | UTF-8 error, empty if ok | answer to RESIZE and REOPEN_LOG |
//!
//! With `stdin_once`, the container's stdin is closed when the first client that wrote to it disconnects.

use std::io::{self, Read, Write};

pub const STDIN: u8 = 1;
pub const CLOSE_STDIN: u8 = 2;
pub const RESIZE: u8 = 3;
pub const REOPEN_LOG: u8 = 4;
pub const ATTACH: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const EXIT: u8 = 8;
pub const ACK: u8 = 9;

/// Largest payload accepted.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Write one frame.
pub fn write_frame(w: &mut impl Write, typ: u8, payload: &[u8]) -> io::Result<()> {
    let mut hdr = [0u8; 5];
    hdr[0] = typ;
    hdr[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    w.write_all(&hdr)?;
    w.write_all(payload)
}

/// Read one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut hdr = [0u8; 5];
    match r.read_exact(&mut hdr) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((hdr[0], payload)))
}

/// A peer announced a payload larger than [`MAX_PAYLOAD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge(pub usize);

/// Incremental frame parser for the monitor's non-blocking reads.
#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
}

impl Parser {
    /// Feed bytes; returns complete frames, or an error for an oversized frame.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, FrameTooLarge> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 5 {
                break;
            }
            let len =
                u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if len > MAX_PAYLOAD {
                return Err(FrameTooLarge(len));
            }
            if self.buf.len() < 5 + len {
                break;
            }
            let typ = self.buf[0];
            let payload = self.buf[5..5 + len].to_vec();
            self.buf.drain(..5 + len);
            out.push((typ, payload));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip_in_pieces() {
        let mut wire = Vec::new();
        write_frame(&mut wire, STDIN, b"hello").expect("write");
        write_frame(&mut wire, RESIZE, &[0, 24, 0, 80]).expect("write");
        let mut p = Parser::default();
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            got.extend(p.feed(chunk).expect("feed"));
        }
        assert_eq!(
            got,
            vec![(STDIN, b"hello".to_vec()), (RESIZE, vec![0, 24, 0, 80])]
        );
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r).expect("read"),
            Some((STDIN, b"hello".to_vec()))
        );
    }
}
