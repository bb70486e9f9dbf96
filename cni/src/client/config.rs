//! Network configuration files: loading a conf dir the way libcni does, noticing when it
//! changes, and writing Berth's default network when there is none.
//!
//! Files ending in `.conflist`, `.conf` or `.json` are read in lexical order and the first
//! valid one wins; a single-plugin `.conf` is wrapped into a one-plugin list.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

/// Spec versions whose configs we accept. 0.3.x is read for the many deployed configs that
/// still declare it; it behaves like 0.4.0 minus CHECK.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Why a config file or directory gave no usable network.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no network config found in {dir}{}", fmt_skipped(.skipped))]
    NoConfig { dir: PathBuf, skipped: Vec<String> },
    #[error("invalid network config {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn fmt_skipped(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(" (skipped: {})", s.join("; "))
    }
}

/// One plugin of a list: its type, declared capabilities and the raw JSON handed to it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    pub plugin_type: String,
    pub capabilities: BTreeMap<String, bool>,
    pub raw: Map<String, Value>,
}

/// A network: a named, versioned chain of plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub plugins: Vec<PluginConf>,
    /// The file it came from (empty when parsed from bytes, e.g. out of the result cache).
    pub source: PathBuf,
    /// The list as JSON, kept verbatim so the cache can replay exactly what ADD used.
    pub raw: Value,
}

impl NetworkConfigList {
    /// Parses a `.conflist` document, or a single-plugin `.conf` when `single` is set.
    pub fn parse(bytes: &[u8], single: bool, source: &Path) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            path: source.to_path_buf(),
            reason,
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| invalid("not a json object".into()))?;
        let (list, raw) = if single || (!obj.contains_key("plugins") && obj.contains_key("type")) {
            let mut l = Map::new();
            l.insert(
                "cniVersion".into(),
                obj.get("cniVersion").cloned().unwrap_or(Value::Null),
            );
            l.insert(
                "name".into(),
                obj.get("name").cloned().unwrap_or(Value::Null),
            );
            l.insert("plugins".into(), Value::Array(vec![v.clone()]));
            let l = Value::Object(l);
            (l.clone(), l)
        } else {
            (v.clone(), v)
        };
        let name = list
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(invalid("missing network name".into()));
        }
        let mut cni_version = list
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // 1.1 lists may offer several versions in `cniVersions`: take the highest we speak.
        if let Some(vs) = list.get("cniVersions").and_then(Value::as_array)
            && let Some(best) = SUPPORTED_VERSIONS
                .iter()
                .rev()
                .find(|s| vs.iter().any(|v| v.as_str() == Some(**s)))
        {
            cni_version = best.to_string();
        }
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(invalid(format!("unsupported cniVersion {cni_version:?}")));
        }
        let disable_check = list
            .get("disableCheck")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let arr = list
            .get("plugins")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("no plugins".into()))?;
        let mut plugins = Vec::new();
        for (i, p) in arr.iter().enumerate() {
            let raw = p
                .as_object()
                .ok_or_else(|| invalid(format!("plugin {i} is not an object")))?;
            let plugin_type = raw.get("type").and_then(Value::as_str).unwrap_or_default();
            if plugin_type.is_empty() || plugin_type.contains('/') {
                return Err(invalid(format!("plugin {i} has no valid type")));
            }
            let capabilities = raw
                .get("capabilities")
                .and_then(Value::as_object)
                .map(|c| {
                    c.iter()
                        .map(|(k, v)| (k.clone(), v.as_bool() == Some(true)))
                        .collect()
                })
                .unwrap_or_default();
            plugins.push(PluginConf {
                plugin_type: plugin_type.to_string(),
                capabilities,
                raw: raw.clone(),
            });
        }
        Ok(Self {
            name,
            cni_version,
            disable_check,
            plugins,
            source: source.to_path_buf(),
            raw,
        })
    }

    /// Reads one file; the extension decides between list and single-plugin form.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = fs::read(path).map_err(|source| ConfigError::Io {
            path: path.into(),
            source,
        })?;
        let single = path.extension().is_some_and(|e| e != "conflist");
        Self::parse(&bytes, single, path)
    }

    /// Whether `version` is at least `major.minor`.
    pub fn version_at_least(&self, major: u32, minor: u32) -> bool {
        version_at_least(&self.cni_version, major, minor)
    }
}

pub(crate) fn version_at_least(v: &str, major: u32, minor: u32) -> bool {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The candidate files of a conf dir in lexical order.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Io {
                path: dir.into(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The first valid network of a conf dir.
pub fn load_dir(dir: &Path) -> Result<NetworkConfigList, ConfigError> {
    let mut skipped = Vec::new();
    for f in config_files(dir)? {
        match NetworkConfigList::load(&f) {
            Ok(l) => return Ok(l),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    Err(ConfigError::NoConfig {
        dir: dir.into(),
        skipped,
    })
}

/// A cheap summary of a conf dir (names, sizes, mtimes): when it changes, reload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirFingerprint(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl DirFingerprint {
    pub fn of(dir: &Path) -> Self {
        let files = config_files(dir).unwrap_or_default();
        Self(
            files
                .into_iter()
                .map(|p| {
                    let m = fs::metadata(&p).ok();
                    let len = m.as_ref().map(|m| m.len()).unwrap_or(0);
                    let mtime = m.and_then(|m| m.modified().ok());
                    (p, len, mtime)
                })
                .collect(),
        )
    }
}

/// Parameters of Berth's default network.
#[derive(Debug, Clone)]
pub struct DefaultNetwork {
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    /// Masquerade pod traffic leaving the node; on for real nodes, off in tests.
    pub ip_masq: bool,
    pub file_name: String,
    /// Where host-local keeps leases; `None` leaves the plugin default (/var/lib/cni/networks).
    pub data_dir: Option<PathBuf>,
}

impl Default for DefaultNetwork {
    fn default() -> Self {
        Self {
            name: "berth".into(),
            bridge: "berth0".into(),
            subnet: "10.88.0.0/16".into(),
            ip_masq: true,
            file_name: "10-berth.conflist".into(),
            data_dir: None,
        }
    }
}

impl DefaultNetwork {
    /// The conflist: our bridge with host-local IPAM, then portmap, then loopback.
    pub fn conflist(&self) -> Value {
        let mut v = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "berth-bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": self.ip_masq,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "berth-host-local",
                        "ranges": [[{ "subnet": self.subnet }]],
                        "routes": [{ "dst": "0.0.0.0/0" }]
                    }
                },
                { "type": "berth-portmap", "capabilities": { "portMappings": true } },
                { "type": "berth-loopback" }
            ]
        });
        if let Some(d) = &self.data_dir {
            v["plugins"][0]["ipam"]["dataDir"] = Value::String(d.to_string_lossy().into_owned());
        }
        v
    }
}

/// Writes the default network into `dir` unless the dir already holds a valid one.
/// Returns the path written, or `None` when an existing network was kept.
pub fn ensure_default(dir: &Path, net: &DefaultNetwork) -> Result<Option<PathBuf>, ConfigError> {
    if load_dir(dir).is_ok() {
        return Ok(None);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(&net.file_name);
    let tmp = dir.join(format!(".{}.tmp", net.file_name));
    let body = serde_json::to_vec_pretty(&net.conflist()).map_err(|e| ConfigError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    fs::write(&tmp, body).map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_first_valid_file_in_lexical_order() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("00-bad.conflist"), "{nope").unwrap();
        fs::write(d.path().join("05-ignored.txt"), "{}").unwrap();
        fs::write(
            d.path().join("20-b.conf"),
            r#"{"cniVersion":"0.4.0","name":"b","type":"bridge"}"#,
        )
        .unwrap();
        fs::write(
            d.path().join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"x","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        let l = load_dir(d.path()).unwrap();
        assert_eq!(l.name, "a");
        assert!(l.plugins[0].capabilities["portMappings"]);
        fs::remove_file(d.path().join("10-a.conflist")).unwrap();
        let l = load_dir(d.path()).unwrap();
        assert_eq!((l.name.as_str(), l.plugins.len()), ("b", 1));
        assert_eq!(l.plugins[0].plugin_type, "bridge");
    }

    #[test]
    fn reports_why_nothing_loaded() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("a.conflist"),
            r#"{"cniVersion":"9.9.9","name":"a","plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        let e = load_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("unsupported cniVersion"), "{e}");
    }

    #[test]
    fn default_written_once_and_fingerprint_changes() {
        let d = tempfile::tempdir().unwrap();
        let before = DirFingerprint::of(d.path());
        let p = ensure_default(d.path(), &DefaultNetwork::default())
            .unwrap()
            .unwrap();
        assert!(p.ends_with("10-berth.conflist"));
        assert_ne!(before, DirFingerprint::of(d.path()));
        assert!(
            ensure_default(d.path(), &DefaultNetwork::default())
                .unwrap()
                .is_none()
        );
        let l = load_dir(d.path()).unwrap();
        let types: Vec<_> = l.plugins.iter().map(|p| p.plugin_type.as_str()).collect();
        assert_eq!(types, ["berth-bridge", "berth-portmap", "berth-loopback"]);
    }

    #[test]
    fn cni_versions_picks_highest_supported() {
        let l = NetworkConfigList::parse(
            br#"{"cniVersion":"1.0.0","cniVersions":["1.0.0","1.1.0","9.0.0"],"name":"n","plugins":[{"type":"x"}]}"#,
            false,
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(l.cni_version, "1.1.0");
    }

    #[test]
    fn version_compare() {
        assert!(version_at_least("1.1.0", 1, 1));
        assert!(!version_at_least("1.0.0", 1, 1));
        assert!(version_at_least("0.4.0", 0, 4));
        assert!(!version_at_least("0.3.1", 0, 4));
    }
}
