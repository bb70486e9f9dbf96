//! The on-disk result cache: what ADD configured, so DEL and CHECK work after a restart.
//!
//! Like libcni's cache dir, one JSON file per (network, container, interface) under
//! `<cache_dir>/results/`. The entry is written before the first plugin runs (so a daemon
//! killed mid-ADD can still tear down with the same config) and completed with the result.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CniError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    /// The netns path ADD was given, so GC can tear down without the runtime's help.
    #[serde(default)]
    pub netns: String,
    /// The network config list exactly as ADD used it.
    pub config: Value,
    pub cni_args: Vec<(String, String)>,
    pub capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

pub const KIND: &str = "cniCacheV1";

fn dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("results")
}

pub fn path(cache_dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    dir(cache_dir).join(format!("{network}-{container_id}-{ifname}"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CniError + '_ {
    move |source| CniError::Cache {
        path: path.to_path_buf(),
        reason: source.to_string(),
    }
}

/// Writes atomically (temp file + rename) so a crash never leaves half an entry.
pub fn save(cache_dir: &Path, e: &CacheEntry) -> Result<(), CniError> {
    let d = dir(cache_dir);
    fs::create_dir_all(&d).map_err(io(&d))?;
    let p = path(cache_dir, &e.network_name, &e.container_id, &e.if_name);
    let tmp = p.with_extension("tmp");
    let body = serde_json::to_vec(e).map_err(|err| CniError::Cache {
        path: p.clone(),
        reason: err.to_string(),
    })?;
    fs::write(&tmp, body).map_err(io(&tmp))?;
    fs::rename(&tmp, &p).map_err(io(&p))
}

pub fn load(
    cache_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Option<CacheEntry> {
    let p = path(cache_dir, network, container_id, ifname);
    let bytes = fs::read(p).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn remove(
    cache_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(), CniError> {
    let p = path(cache_dir, network, container_id, ifname);
    match fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&p)(e)),
        _ => Ok(()),
    }
}

/// Every cached entry of a container/interface, whatever network it was added to.
pub fn for_container(cache_dir: &Path, container_id: &str, ifname: &str) -> Vec<CacheEntry> {
    let Ok(rd) = fs::read_dir(dir(cache_dir)) else {
        return Vec::new();
    };
    let suffix = format!("-{container_id}-{ifname}");
    rd.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<CacheEntry>(&b).ok())
        .filter(|e| e.container_id == container_id && e.if_name == ifname)
        .collect()
}

/// Every cached entry (for GC).
pub fn all(cache_dir: &Path) -> Vec<CacheEntry> {
    let Ok(rd) = fs::read_dir(dir(cache_dir)) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<CacheEntry>(&b).ok())
        .collect()
}
