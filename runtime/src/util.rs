//! Small helpers shared by the runtime, the monitor and the handlers: process identity, time formatting, files.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
///
/// pid_max is small on the machines we run on, so a PID alone names nothing for long: a (pid, start time) pair does.
pub fn proc_start_time(pid: i32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/PID/stat"))
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The process state letter (R, S, Z, ...) of `pid`.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// A pidfd for `pid`, valid only if the process still has `start_time`: the pidfd pins the identity from then on.
pub fn pidfd_for(pid: i32, start_time: u64) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    match proc_start_time(pid) {
        Ok(t) if t == start_time && proc_state(pid) != Some('Z') => Ok(Some(fd)),
        _ => Ok(None),
    }
}

/// Send `sig` through a pidfd (never to a recycled PID).
pub fn pidfd_send_signal(fd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we own; null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<u8>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Wait up to `timeout_ms` for the process behind a pidfd to exit (a zombie counts as exited). True if it did.
pub fn pidfd_wait(fd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    r > 0
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Format nanoseconds since the epoch as RFC 3339 in UTC with nine fractional digits (`2006-01-02T15:04:05.000000000Z`).
///
/// Hand-written so the monitor needs no date crate; the CRI log reader parses any fraction length.
pub fn rfc3339_nanos(nanos: i128) -> String {
    let mut buf = [0u8; 30];
    let n = rfc3339_into(nanos, &mut buf);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Write the RFC 3339 form of `nanos` into `buf` (30 bytes) and return its length; allocation-free for the monitor.
pub fn rfc3339_into(nanos: i128, buf: &mut [u8; 30]) -> usize {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    let mut w = Cursor { buf, pos: 0 };
    w.num(y as u64, 4);
    w.byte(b'-');
    w.num(m as u64, 2);
    w.byte(b'-');
    w.num(d as u64, 2);
    w.byte(b'T');
    w.num(hh as u64, 2);
    w.byte(b':');
    w.num(mm as u64, 2);
    w.byte(b':');
    w.num(ss as u64, 2);
    w.byte(b'.');
    w.num(frac as u64, 9);
    w.byte(b'Z');
    w.pos
}

struct Cursor<'a> {
    buf: &'a mut [u8; 30],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos += 1;
    }
    fn num(&mut self, mut v: u64, width: usize) {
        for i in (0..width).rev() {
            self.buf[self.pos + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.pos += width;
    }
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Replace `path` with `data` atomically: write a temp file beside it, fsync-free rename over it.
///
/// Readers (the daemon after a restart) see the old or the new content, never a torn one.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
    }
    fs::rename(&tmp, path)
}

/// Write a whole value to a kernel file (cgroupfs, procfs) in one write.
pub fn write_file(path: &Path, data: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(data.as_bytes())
}

/// The serde name of an oci-spec enum value (e.g. `CAP_CHOWN`, `RLIMIT_NOFILE`, `SCMP_ACT_ERRNO`).
pub fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn start_time_survives_parens_in_comm() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(parse_start_time(stat), Some(12345));
    }
}
