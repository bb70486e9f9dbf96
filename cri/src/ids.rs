//! Pod and container ids: 64 hex digits of randomness, found again by any unambiguous prefix.

use std::io::Read;

/// A new random id, as containerd and CRI-O make them.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if filled.is_err() {
        // Never expected on Linux; a time-and-pid id is still unique on this host.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes[..16].copy_from_slice(&t.to_le_bytes());
        bytes[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one id among `ids` that `wanted` names exactly or as a prefix; `Err(n)` counts the matches when not one.
pub fn resolve<'a>(wanted: &str, ids: impl IntoIterator<Item = &'a str>) -> Result<&'a str, usize> {
    let mut found = None;
    let mut n = 0;
    for id in ids {
        if id == wanted {
            return Ok(id);
        }
        if !wanted.is_empty() && id.starts_with(wanted) {
            found = Some(id);
            n += 1;
        }
    }
    match (found, n) {
        (Some(id), 1) => Ok(id),
        _ => Err(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_hex() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn prefixes_resolve_only_when_unambiguous() {
        let ids = ["abc123", "abd456"];
        assert_eq!(resolve("abc", ids), Ok("abc123"));
        assert_eq!(resolve("ab", ids), Err(2));
        assert_eq!(resolve("x", ids), Err(0));
        assert_eq!(resolve("", ids), Err(0));
    }
}
