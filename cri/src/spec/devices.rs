//! Devices: CRI `devices` (host nodes, or every node under a host directory), all of the host's `/dev` for
//! privileged containers, and the device cgroup rules (deny all, then the standard nodes, then what was granted).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::SpecError;
use crate::api::ContainerConfig;

pub struct Devices {
    pub devices: Vec<LinuxDevice>,
    pub rules: Vec<LinuxDeviceCgroup>,
}

/// The nodes every container may use (runc's default allow list): (type, major, minor, access).
pub const DEFAULT_ALLOWED: &[(LinuxDeviceType, Option<i64>, Option<i64>, &str)] = &[
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"), // null
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"), // zero
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"), // full
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"), // random
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"), // urandom
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"), // tty
    (LinuxDeviceType::C, Some(5), Some(1), "rwm"), // console
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"), // ptmx
    (LinuxDeviceType::C, Some(136), None, "rwm"),  // pts/*
];

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// The device at `host` (not following a final symlink), shown at `container`; `None` if it is not a device node.
fn device_at(host: &Path, container: &Path) -> std::io::Result<Option<LinuxDevice>> {
    let m = std::fs::symlink_metadata(host)?;
    let ft = m.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else if ft.is_fifo() {
        LinuxDeviceType::P
    } else {
        return Ok(None);
    };
    let rdev = m.rdev();
    let mut d = LinuxDevice::default();
    d.set_path(container.to_path_buf());
    d.set_typ(typ);
    d.set_major(libc::major(rdev) as i64);
    d.set_minor(libc::minor(rdev) as i64);
    d.set_file_mode(Some(m.mode() & 0o777));
    d.set_uid(Some(m.uid()));
    d.set_gid(Some(m.gid()));
    Ok(Some(d))
}

/// Device nodes under `dir` (recursively), paired with their path under `container`.
fn walk(
    dir: &Path,
    container: &Path,
    skip: &[&str],
    out: &mut Vec<LinuxDevice>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if skip.contains(&name_s.as_ref()) {
            continue;
        }
        let ft = entry.file_type()?;
        let (host, ctr) = (entry.path(), container.join(&name));
        if ft.is_dir() {
            walk(&host, &ctr, skip, out)?;
        } else if let Some(d) = device_at(&host, &ctr)? {
            out.push(d);
        }
    }
    Ok(())
}

fn check_permissions(p: &str, path: &str) -> Result<String, SpecError> {
    if p.is_empty() {
        return Ok("rwm".into());
    }
    if p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        Ok(p.to_string())
    } else {
        Err(SpecError::Device {
            path: path.into(),
            reason: format!("permissions {p:?} must be made of r, w and m"),
        })
    }
}

/// Devices and device cgroup rules of a container.
pub fn devices(config: &ContainerConfig, privileged: bool) -> Result<Devices, SpecError> {
    let mut devices = Vec::new();
    let mut rules = vec![rule(false, LinuxDeviceType::A, None, None, "rwm")];
    if privileged {
        // containerd's WithHostDevices + WithAllDevicesAllowed.
        let _ = walk(
            Path::new("/dev"),
            Path::new("/dev"),
            &[
                "pts",
                "shm",
                "fd",
                "mqueue",
                ".lxc",
                ".lxd-mounts",
                ".udev",
                "console",
            ],
            &mut devices,
        );
        rules = vec![rule(true, LinuxDeviceType::A, None, None, "rwm")];
    } else {
        for (t, ma, mi, acc) in DEFAULT_ALLOWED {
            rules.push(rule(true, *t, *ma, *mi, acc));
        }
    }
    for d in &config.devices {
        let err = |reason: String| SpecError::Device {
            path: d.host_path.clone(),
            reason,
        };
        if d.host_path.is_empty() || d.container_path.is_empty() {
            return Err(err("host_path and container_path are required".into()));
        }
        if !d.container_path.starts_with('/') {
            return Err(err(format!(
                "container path {:?} is not absolute",
                d.container_path
            )));
        }
        let access = check_permissions(&d.permissions, &d.host_path)?;
        let host = std::fs::canonicalize(&d.host_path).map_err(|e| err(e.to_string()))?;
        let ctr = PathBuf::from(&d.container_path);
        let mut found = Vec::new();
        if host.is_dir() {
            walk(&host, &ctr, &[], &mut found).map_err(|e| err(e.to_string()))?;
        } else {
            match device_at(&host, &ctr).map_err(|e| err(e.to_string()))? {
                Some(dev) => found.push(dev),
                None => return Err(err("not a device node".into())),
            }
        }
        for dev in found {
            if !privileged {
                rules.push(rule(
                    true,
                    dev.typ(),
                    Some(dev.major()),
                    Some(dev.minor()),
                    &access,
                ));
            }
            devices.retain(|x: &LinuxDevice| x.path() != dev.path());
            devices.push(dev);
        }
    }
    Ok(Devices { devices, rules })
}
