//! The shared skeleton of our plugin executables: read the spec's environment and stdin,
//! dispatch on CNI_COMMAND, print the result (in the caller's cniVersion) or a spec error.
//!
//! Each plugin is a [`Plugin`]; `src/bin/berth-*.rs` are one-line mains calling [`run`].

pub mod bridge;
pub mod ipam;
pub mod loopback;
pub mod portmap;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

use crate::client::result::{CniResult, ErrorOutput};

/// Versions our plugins speak; results are printed in the version the config asked for.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Spec error codes (1-99 are reserved by the spec; ours start at 100).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const INTERNAL: u32 = 100;
    pub const NO_ADDRESSES: u32 = 101;
    pub const IFNAME_EXISTS: u32 = 102;
}

/// A failure reported to the runtime as the spec's error JSON.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct PluginError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl PluginError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg)
    }
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Self::new(code::INTERNAL, msg.to_string())
    }
}

impl From<crate::netlink::NetlinkError> for PluginError {
    fn from(e: crate::netlink::NetlinkError) -> Self {
        Self::internal(e)
    }
}

impl From<crate::nft::NftError> for PluginError {
    fn from(e: crate::nft::NftError) -> Self {
        Self::internal(e)
    }
}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        Self::new(code::IO, e.to_string())
    }
}

/// The invocation as the spec passes it.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
    pub stdin: Vec<u8>,
    /// cniVersion of the config on stdin.
    pub version: String,
}

impl Args {
    fn from_env(stdin: Vec<u8>) -> Self {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let args = var("CNI_ARGS")
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let path = std::env::split_paths(&var("CNI_PATH"))
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        Self {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args,
            path,
            stdin,
            version: String::new(),
        }
    }

    /// Parses stdin as the plugin's own config type.
    pub fn conf<T: for<'de> Deserialize<'de>>(&self) -> Result<T, PluginError> {
        serde_json::from_slice(&self.stdin)
            .map_err(|e| PluginError::new(code::DECODE, format!("decode config: {e}")))
    }

    pub fn require_container(&self) -> Result<(), PluginError> {
        if self.container_id.is_empty() {
            return Err(PluginError::new(
                code::INVALID_ENV,
                "CNI_CONTAINERID is required",
            ));
        }
        if self.ifname.is_empty() {
            return Err(PluginError::new(
                code::INVALID_ENV,
                "CNI_IFNAME is required",
            ));
        }
        Ok(())
    }
}

/// What each plugin implements. DEL must be idempotent (the runtime may repeat it).
pub trait Plugin {
    fn add(&self, a: &Args) -> Result<CniResult, PluginError>;
    fn del(&self, a: &Args) -> Result<(), PluginError>;
    fn check(&self, a: &Args) -> Result<(), PluginError>;
    fn status(&self, _a: &Args) -> Result<(), PluginError> {
        Ok(())
    }
    /// GC (1.1): release whatever belongs to attachments not in `valid` (container id, ifname).
    fn gc(&self, _a: &Args, _valid: &[(String, String)]) -> Result<(), PluginError> {
        Ok(())
    }
}

/// The `cni.dev/valid-attachments` of a GC config.
pub fn valid_attachments(a: &Args) -> Result<Vec<(String, String)>, PluginError> {
    let v: Value = a.conf()?;
    Ok(v.get("cni.dev/valid-attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| {
            Some((
                x.get("containerID")?.as_str()?.to_string(),
                x.get("ifname")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

/// Runs a plugin as the process's main and exits.
pub fn run<P: Plugin>(p: P) -> ! {
    let mut stdin = Vec::new();
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command != "VERSION" {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let mut a = Args::from_env(stdin);
    let out = dispatch(&p, &mut a);
    let mut so = std::io::stdout().lock();
    match out {
        Ok(Some(v)) => {
            let _ = serde_json::to_writer(&mut so, &v);
            let _ = so.flush();
            std::process::exit(0)
        }
        Ok(None) => std::process::exit(0),
        Err(e) => {
            let eo = ErrorOutput {
                cni_version: if a.version.is_empty() {
                    "1.1.0".into()
                } else {
                    a.version.clone()
                },
                code: e.code,
                msg: e.msg,
                details: e.details,
            };
            let _ = serde_json::to_writer(&mut so, &eo);
            let _ = so.flush();
            std::process::exit(1)
        }
    }
}

fn dispatch<P: Plugin>(p: &P, a: &mut Args) -> Result<Option<Value>, PluginError> {
    if a.command == "VERSION" {
        return Ok(Some(
            serde_json::json!({"cniVersion": "1.1.0", "supportedVersions": SUPPORTED}),
        ));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        #[serde(default)]
        cni_version: String,
    }
    let head: Head = a.conf()?;
    if !SUPPORTED.contains(&head.cni_version.as_str()) {
        return Err(PluginError::new(
            code::INCOMPATIBLE_VERSION,
            format!("unsupported cniVersion {:?}", head.cni_version),
        ));
    }
    a.version = head.cni_version;
    match a.command.as_str() {
        "ADD" => {
            a.require_container()?;
            let r = p.add(a)?;
            let v =
                serde_json::to_value(r.to_version(&a.version)).map_err(PluginError::internal)?;
            Ok(Some(v))
        }
        "DEL" => p.del(a).map(|_| None),
        "CHECK" => {
            a.require_container()?;
            p.check(a).map(|_| None)
        }
        "STATUS" => p.status(a).map(|_| None),
        "GC" => {
            let valid = valid_attachments(a)?;
            p.gc(a, &valid).map(|_| None)
        }
        other => Err(PluginError::new(
            code::INVALID_ENV,
            format!("unknown CNI_COMMAND {other:?}"),
        )),
    }
}

/// The `prevResult` of a chained config, parsed.
pub fn prev_result(conf: &Value) -> Result<Option<CniResult>, PluginError> {
    match conf.get("prevResult") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| PluginError::new(code::DECODE, format!("decode prevResult: {e}"))),
    }
}

/// Runs a delegated plugin (IPAM) found in CNI_PATH with our own environment and stdin,
/// overriding only the command; returns its stdout.
pub fn delegate(a: &Args, plugin_type: &str, command: &str) -> Result<Vec<u8>, PluginError> {
    spawn_delegate(a, plugin_type, command)?.wait()
}

/// A delegated plugin that is running; lets the caller overlap its own work with it.
pub struct Delegated {
    child: std::process::Child,
    exe: PathBuf,
    command: String,
}

/// Starts a delegated plugin without waiting for it.
pub fn spawn_delegate(
    a: &Args,
    plugin_type: &str,
    command: &str,
) -> Result<Delegated, PluginError> {
    if plugin_type.is_empty() || plugin_type.contains('/') {
        return Err(PluginError::config("ipam.type is required"));
    }
    let exe = a
        .path
        .iter()
        .map(|d| d.join(plugin_type))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            PluginError::config(format!("failed to find plugin {plugin_type:?} in CNI_PATH"))
        })?;
    let mut child = Command::new(&exe)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    if let Some(mut s) = child.stdin.take() {
        // Configs are far smaller than a pipe buffer, so this never blocks on the child.
        let _ = s.write_all(&a.stdin);
    }
    Ok(Delegated {
        child,
        exe,
        command: command.to_string(),
    })
}

impl Delegated {
    pub fn wait(self) -> Result<Vec<u8>, PluginError> {
        let out = self.child.wait_with_output()?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        match serde_json::from_slice::<ErrorOutput>(&out.stdout) {
            Ok(e) => Err(PluginError {
                code: e.code,
                msg: e.msg,
                details: e.details,
            }),
            Err(_) => Err(PluginError::internal(format!(
                "{} {} failed: {}",
                self.exe.display(),
                self.command,
                String::from_utf8_lossy(&out.stdout).trim()
            ))),
        }
    }
}

/// Writes a sysctl under /proc/sys (of the caller's network namespace).
pub fn sysctl(path: &str, value: &str) -> Result<(), PluginError> {
    let p = Path::new("/proc/sys").join(path);
    if std::fs::read_to_string(&p)
        .map(|s| s.trim() == value)
        .unwrap_or(false)
    {
        return Ok(());
    }
    std::fs::write(&p, value)
        .map_err(|e| PluginError::new(code::IO, format!("write {}: {e}", p.display())))
}

/// A short, stable name for a container's attachment (nft chain names, veth names): FNV-1a.
pub fn short_hash(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0u8)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}
