//! Last-resort cleanup after a failed test or benchmark.

use std::ffi::CString;
use std::path::Path;

/// Lazily unmounts everything mounted at or below `dir`, deepest first, so a failure leaves no mount on the host.
pub fn detach_mounts_under(dir: &Path) {
    let root = dir.to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.starts_with(&root))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        if let Ok(c) = CString::new(t) {
            // SAFETY: umount2 on a NUL-terminated path we own; failure is ignored (best effort).
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
