//! The five capability sets of the process spec, applied with raw `capset`/`prctl` (no libcap).
//!
//! Order matters: the bounding set is cut while CAP_SETPCAP is still held, then effective/permitted/inheritable are
//! set in one `capset`, then ambient capabilities are raised (each must be in permitted and inheritable).

use std::collections::HashSet;

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::SetupError;
use crate::util::serde_name;

/// Capability names in number order (CAP_CHOWN = 0 ...).
const NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Number of a capability name (`CAP_SYS_ADMIN` -> 21).
pub fn number(name: &str) -> Option<u32> {
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// Highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
}

fn set_of(caps: &Option<Capabilities>) -> HashSet<u32> {
    caps.iter()
        .flatten()
        .filter_map(|c| number(&serde_name(c)))
        .collect()
}

fn mask(set: &HashSet<u32>) -> u64 {
    set.iter()
        .filter(|c| **c < 64)
        .fold(0u64, |m, c| m | (1u64 << c))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), SetupError> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and two data structs laid out as the kernel's v3 ABI expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r < 0 {
        return Err(SetupError::Io {
            op: "capset".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn prctl(op: i32, a: u64, b: u64) -> Result<(), SetupError> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(op, a, b, 0u64, 0u64) };
    if r < 0 {
        return Err(SetupError::Io {
            op: format!("prctl {op} {a} {b}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Drop from the bounding set everything not in it (needs CAP_SETPCAP, so call before `apply`).
pub fn drop_bounding(caps: &LinuxCapabilities) -> Result<(), SetupError> {
    let keep = set_of(caps.bounding());
    for c in 0..=last_cap() {
        if !keep.contains(&c) {
            prctl(libc::PR_CAPBSET_DROP, c as u64, 0)?;
        }
    }
    Ok(())
}

/// Set effective, permitted, inheritable, then raise ambient.
pub fn apply(caps: &LinuxCapabilities) -> Result<(), SetupError> {
    let (permitted, inheritable) = (set_of(caps.permitted()), set_of(caps.inheritable()));
    // The kernel raises an ambient capability only if it is permitted and inheritable; runc's default spec lists
    // ambient capabilities without inheritable ones, so the others are skipped rather than failing the container.
    let ambient: HashSet<u32> = set_of(caps.ambient())
        .into_iter()
        .filter(|c| permitted.contains(c) && inheritable.contains(c))
        .collect();
    capset(
        mask(&set_of(caps.effective())),
        mask(&permitted),
        mask(&inheritable),
    )?;
    if !ambient.is_empty() {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as u64,
            0,
        )?;
        for c in ambient {
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as u64,
                c as u64,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_match_the_kernel() {
        assert_eq!(super::number("CAP_CHOWN"), Some(0));
        assert_eq!(super::number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(super::number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(super::number("CAP_NOPE"), None);
    }
}
