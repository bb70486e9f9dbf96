//! nftables through the `nft` CLI: atomic scripts in, JSON listings out.
//!
//! Each plugin owns one table and gives every attachment its own chain plus rules tagged with
//! a comment naming that chain, so DEL can find and delete exactly what ADD made.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft failed: {0}")]
    Failed(String),
    #[error("decode nft json: {0}")]
    Decode(String),
}

fn nft_bin() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() {
        "/usr/sbin/nft"
    } else {
        "nft"
    }
}

/// Whether the nft CLI runs at all.
pub fn available() -> Result<(), NftError> {
    let out = Command::new(nft_bin())
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Applies a script as one transaction (`nft -f -`): all of it or none.
pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new(nft_bin())
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut s) = child.stdin.take() {
        s.write_all(script.as_bytes()).map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// What a table holds: chain names and (chain, handle, comment) of its rules.
#[derive(Debug, Default)]
pub struct TableListing {
    pub chains: Vec<String>,
    pub rules: Vec<(String, u64, Option<String>)>,
}

/// Lists a table, or `None` when it does not exist.
pub fn list_table(family: &str, table: &str) -> Result<Option<TableListing>, NftError> {
    let out = Command::new(nft_bin())
        .args(["-j", "-a", "list", "table", family, table])
        .stdin(Stdio::null())
        .output()
        .map_err(NftError::Spawn)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(NftError::Failed(err.trim().to_string()));
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| NftError::Decode(e.to_string()))?;
    let mut l = TableListing::default();
    for item in v
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(c) = item.get("chain") {
            if let Some(n) = c.get("name").and_then(Value::as_str) {
                l.chains.push(n.to_string());
            }
        } else if let Some(r) = item.get("rule") {
            let chain = r
                .get("chain")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let handle = r.get("handle").and_then(Value::as_u64).unwrap_or(0);
            let comment = r.get("comment").and_then(Value::as_str).map(str::to_string);
            l.rules.push((chain, handle, comment));
        }
    }
    Ok(Some(l))
}

/// Deletes an attachment's chain and every rule tagged with its name, in one transaction.
/// Returns the listing as it was (so callers can tell whether other attachments remain).
pub fn delete_tagged(
    family: &str,
    table: &str,
    tag: &str,
) -> Result<Option<TableListing>, NftError> {
    let Some(l) = list_table(family, table)? else {
        return Ok(None);
    };
    delete_tagged_in(&l, family, table, tag)?;
    Ok(Some(l))
}

/// [`delete_tagged`] against a listing the caller already has.
pub fn delete_tagged_in(
    l: &TableListing,
    family: &str,
    table: &str,
    tag: &str,
) -> Result<(), NftError> {
    let mut script = String::new();
    for (chain, handle, comment) in &l.rules {
        if comment.as_deref() == Some(tag) {
            script.push_str(&format!(
                "delete rule {family} {table} {chain} handle {handle}\n"
            ));
        }
    }
    if l.chains.iter().any(|c| c == tag) {
        script.push_str(&format!("flush chain {family} {table} {tag}\n"));
        script.push_str(&format!("delete chain {family} {table} {tag}\n"));
    }
    if !script.is_empty() {
        apply(&script)?;
    }
    Ok(())
}

/// Deletes every attachment chain (named `<prefix><16 hex>`) not in `keep`, with its tagged
/// rules: the GC counterpart of [`delete_tagged`].
pub fn delete_untagged_except(
    family: &str,
    table: &str,
    prefix: char,
    keep: &[String],
) -> Result<(), NftError> {
    let Some(l) = list_table(family, table)? else {
        return Ok(());
    };
    let is_attachment = |c: &str| {
        c.len() == 17 && c.starts_with(prefix) && c[1..].chars().all(|x| x.is_ascii_hexdigit())
    };
    let stale: Vec<&String> = l
        .chains
        .iter()
        .filter(|c| is_attachment(c) && !keep.contains(c))
        .collect();
    let mut script = String::new();
    for (chain, handle, comment) in &l.rules {
        if comment.as_ref().is_some_and(|c| stale.contains(&c)) {
            script.push_str(&format!(
                "delete rule {family} {table} {chain} handle {handle}\n"
            ));
        }
    }
    for c in stale {
        script.push_str(&format!("flush chain {family} {table} {c}\n"));
        script.push_str(&format!("delete chain {family} {table} {c}\n"));
    }
    if !script.is_empty() {
        apply(&script)?;
    }
    Ok(())
}
