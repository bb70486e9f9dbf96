//! Running one plugin executable per the spec: config on stdin, parameters in CNI_* variables,
//! result or error JSON on stdout.
//!
//! A plugin runs in its own process group so that a hung plugin, and anything it started
//! (bridge runs its IPAM plugin), is killed as a whole when the timeout expires.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::CniError;
use super::result::ErrorOutput;

/// The per-call parameters the spec passes in the environment.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub command: &'static str,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
}

impl Invocation {
    fn env(&self) -> Vec<(&'static str, String)> {
        let path = std::env::join_paths(&self.path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut env = vec![
            ("CNI_COMMAND", self.command.to_string()),
            ("CNI_PATH", path),
        ];
        if self.command != "STATUS" && self.command != "VERSION" {
            let args = self
                .args
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";");
            env.extend([
                ("CNI_CONTAINERID", self.container_id.clone()),
                ("CNI_NETNS", self.netns.clone()),
                ("CNI_IFNAME", self.ifname.clone()),
                ("CNI_ARGS", args),
            ]);
        }
        env
    }
}

/// Finds a plugin executable by its `type` in the bin dirs (first match wins).
pub fn find_plugin(plugin_type: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    bin_dirs
        .iter()
        .map(|d| d.join(plugin_type))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::PluginNotFound {
            plugin: plugin_type.to_string(),
            dirs: bin_dirs.to_vec(),
        })
}

/// Runs `plugin` with `stdin` and returns its stdout on success.
pub async fn run(
    plugin: &Path,
    inv: &Invocation,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    let name = plugin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = Command::new(plugin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(inv.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| CniError::Spawn {
        plugin: name.clone(),
        source,
    })?;
    let pid = child.id();
    let mut sin = child.stdin.take();
    let mut sout = child.stdout.take();
    let mut serr = child.stderr.take();
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        // Feed stdin while draining stdout/stderr, so neither side can fill a pipe and stall.
        let (_, r1, r2, status) = tokio::join!(
            async {
                if let Some(mut s) = sin.take() {
                    // A plugin may exit without reading stdin; a broken pipe is not its failure.
                    let _ = s.write_all(stdin).await;
                }
            },
            async {
                match sout.as_mut() {
                    Some(s) => s.read_to_end(&mut out).await.map(|_| ()),
                    None => Ok(()),
                }
            },
            async {
                match serr.as_mut() {
                    Some(s) => s.read_to_end(&mut err).await.map(|_| ()),
                    None => Ok(()),
                }
            },
            child.wait()
        );
        r1?;
        r2?;
        Ok::<_, std::io::Error>((status?, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r.map_err(|source| CniError::Spawn {
            plugin: name.clone(),
            source,
        })?,
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: plain syscall; the group was created for this child by process_group(0).
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let _ = child.kill().await;
            return Err(CniError::Timeout {
                plugin: name,
                command: inv.command,
                timeout,
            });
        }
    };
    if status.success() {
        return Ok(out);
    }
    if let Ok(e) = serde_json::from_slice::<ErrorOutput>(&out) {
        return Err(CniError::Plugin {
            plugin: name,
            command: inv.command,
            code: e.code,
            msg: e.msg,
            details: e.details,
        });
    }
    let mut text = String::from_utf8_lossy(&err).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out).trim().to_string();
    }
    Err(CniError::Crashed {
        plugin: name,
        command: inv.command,
        status: status.to_string(),
        output: text,
    })
}
