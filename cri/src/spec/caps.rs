//! Process capabilities: containerd's default set, CRI add/drop (`ALL` first, then single names, drops last),
//! ambient capabilities, and everything we hold for privileged containers.

use std::collections::HashSet;
use std::str::FromStr;

use oci_spec::runtime::{Capability, LinuxCapabilities};

use super::SpecError;
use crate::api::LinuxContainerSecurityContext;

/// containerd's (and Docker's) default capabilities.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Capability names by number (`linux/capability.h`).
const BY_NUMBER: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capability sets of the container's process (bounding = effective = permitted; inheritable = ambient).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    pub set: Vec<Capability>,
    pub ambient: Vec<Capability>,
}

impl Caps {
    pub fn has(&self, c: Capability) -> bool {
        self.set.contains(&c)
    }

    pub fn to_oci(&self) -> LinuxCapabilities {
        let set: HashSet<Capability> = self.set.iter().copied().collect();
        let ambient: HashSet<Capability> = self.ambient.iter().copied().collect();
        let mut c = LinuxCapabilities::default();
        c.set_bounding(Some(set.clone()));
        c.set_effective(Some(set.clone()));
        c.set_permitted(Some(set));
        c.set_inheritable(Some(ambient.clone()));
        c.set_ambient(Some(ambient));
        c
    }
}

/// Parse `SYS_ADMIN`, `CAP_SYS_ADMIN`, `sys_admin`.
pub fn parse(name: &str) -> Result<Capability, SpecError> {
    let up = name.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    Capability::from_str(bare).map_err(|_| SpecError::Capability(name.to_string()))
}

/// Every capability this process holds in its bounding set: what a privileged container (or `add: ALL`) can get.
/// Asking for more would make the runtime fail (this host's root lacks CAP_SYS_RESOURCE, for one).
pub fn available() -> Vec<Capability> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    BY_NUMBER
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .filter_map(|(_, n)| Capability::from_str(n).ok())
        .collect()
}

fn push(v: &mut Vec<Capability>, c: Capability) {
    if !v.contains(&c) {
        v.push(c);
    }
}

/// The container's capabilities from its security context.
pub fn capabilities(sc: &LinuxContainerSecurityContext) -> Result<Caps, SpecError> {
    let req = sc.capabilities.clone().unwrap_or_default();
    let is_all = |s: &String| s.trim().eq_ignore_ascii_case("ALL");
    let mut set: Vec<Capability> = if sc.privileged {
        available()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|n| parse(n))
            .collect::<Result<_, _>>()?
    };
    if !sc.privileged {
        if req.add_capabilities.iter().any(is_all) {
            set = available();
        }
        if req.drop_capabilities.iter().any(is_all) {
            set.clear();
        }
        for n in req.add_capabilities.iter().filter(|n| !is_all(n)) {
            push(&mut set, parse(n)?);
        }
        for n in req.drop_capabilities.iter().filter(|n| !is_all(n)) {
            let c = parse(n)?;
            set.retain(|x| *x != c);
        }
    }
    let mut ambient = Vec::new();
    for n in &req.add_ambient_capabilities {
        let c = parse(n)?;
        push(&mut set, c);
        push(&mut ambient, c);
    }
    Ok(Caps { set, ambient })
}
