//! The daemon's side of the monitor socket: attach, stdin, resize, reopen-log. Blocking; call from
//! `spawn_blocking` (or a dedicated thread per attach stream).

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::protocol::{self, read_frame, write_frame};
use crate::error::MonitorError;

/// What a monitor sends to an attached client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The container exited with this code (128+signal when killed).
    Exit(i32),
}

/// A connection to one container's monitor.
pub struct MonitorClient {
    stream: UnixStream,
}

fn io_err(what: &str) -> impl FnOnce(io::Error) -> MonitorError + '_ {
    move |source| MonitorError::Io {
        what: what.to_string(),
        source,
    }
}

impl MonitorClient {
    /// Connect to `<state dir>/attach.sock`.
    pub fn connect(sock: &Path) -> Result<Self, MonitorError> {
        let stream = UnixStream::connect(sock).map_err(io_err("connect"))?;
        Ok(MonitorClient { stream })
    }

    /// A second handle on the same connection (e.g. one thread writes stdin while another reads output).
    pub fn try_clone(&self) -> Result<Self, MonitorError> {
        Ok(MonitorClient {
            stream: self.stream.try_clone().map_err(io_err("clone"))?,
        })
    }

    /// Subscribe to the container's output; then call [`MonitorClient::next_event`].
    pub fn attach(&mut self) -> Result<(), MonitorError> {
        write_frame(&mut self.stream, protocol::ATTACH, &[]).map_err(io_err("attach"))
    }

    /// Write to the container's stdin.
    pub fn write_stdin(&mut self, data: &[u8]) -> Result<(), MonitorError> {
        write_frame(&mut self.stream, protocol::STDIN, data).map_err(io_err("stdin"))
    }

    /// Close the container's stdin.
    pub fn close_stdin(&mut self) -> Result<(), MonitorError> {
        write_frame(&mut self.stream, protocol::CLOSE_STDIN, &[]).map_err(io_err("close stdin"))
    }

    /// Resize the container's pty.
    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<(), MonitorError> {
        let mut p = [0u8; 4];
        p[..2].copy_from_slice(&rows.to_be_bytes());
        p[2..].copy_from_slice(&cols.to_be_bytes());
        write_frame(&mut self.stream, protocol::RESIZE, &p).map_err(io_err("resize"))?;
        self.ack()
    }

    /// Make the monitor reopen its log file (after the kubelet rotated it).
    pub fn reopen_log(&mut self) -> Result<(), MonitorError> {
        write_frame(&mut self.stream, protocol::REOPEN_LOG, &[]).map_err(io_err("reopen log"))?;
        self.ack()
    }

    fn ack(&mut self) -> Result<(), MonitorError> {
        loop {
            match read_frame(&mut self.stream).map_err(io_err("read"))? {
                Some((protocol::ACK, p)) if p.is_empty() => return Ok(()),
                Some((protocol::ACK, p)) => {
                    return Err(MonitorError::Failed(
                        String::from_utf8_lossy(&p).into_owned(),
                    ));
                }
                Some(_) => continue,
                None => {
                    return Err(MonitorError::Protocol(
                        "monitor closed the connection".into(),
                    ));
                }
            }
        }
    }

    /// Next output or exit event; None when the monitor closed the connection.
    pub fn next_event(&mut self) -> Result<Option<Event>, MonitorError> {
        loop {
            let Some((typ, p)) = read_frame(&mut self.stream).map_err(io_err("read"))? else {
                return Ok(None);
            };
            return Ok(Some(match typ {
                protocol::STDOUT => Event::Stdout(p),
                protocol::STDERR => Event::Stderr(p),
                protocol::EXIT if p.len() == 4 => {
                    Event::Exit(i32::from_be_bytes([p[0], p[1], p[2], p[3]]))
                }
                _ => continue,
            }));
        }
    }
}
