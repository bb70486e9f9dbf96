//! Which seccomp filter a container gets: `RuntimeDefault` (the table in `seccomp_default`), `Unconfined` (none)
//! or `Localhost` (a JSON profile on the host, OCI `linux.seccomp` or Docker's format with `archMap`, `name` and
//! capability/arch `includes`/`excludes`). Without a `seccomp` field the deprecated `seccomp_profile_path` is read;
//! empty means unconfined, as containerd does.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::Value;

use super::caps::{self, Caps};
use super::{SpecError, seccomp_default};
use crate::api::LinuxContainerSecurityContext;
use crate::api::security_profile::ProfileType;

/// Largest profile we read.
const MAX_PROFILE: u64 = 4 << 20;

#[allow(deprecated)] // seccomp_profile_path is read only when `seccomp` is absent, as containerd does
pub fn profile(
    sc: &LinuxContainerSecurityContext,
    caps: &Caps,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    if let Some(p) = &sc.seccomp {
        return match p.profile_type() {
            ProfileType::RuntimeDefault => Ok(Some(seccomp_default::profile(caps))),
            ProfileType::Unconfined => Ok(None),
            ProfileType::Localhost => load(&p.localhost_ref, caps).map(Some),
        };
    }
    match sc.seccomp_profile_path.as_str() {
        "" | "unconfined" => Ok(None),
        "runtime/default" | "docker/default" => Ok(Some(seccomp_default::profile(caps))),
        other => match other.strip_prefix("localhost/") {
            Some(path) => load(path, caps).map(Some),
            None => Err(SpecError::Seccomp(format!(
                "unknown seccomp profile {other:?}: expected runtime/default, unconfined or localhost/<path>"
            ))),
        },
    }
}

/// Load a Localhost profile from an absolute host path.
pub fn load(path: &str, caps: &Caps) -> Result<LinuxSeccomp, SpecError> {
    use std::io::Read;
    if !path.starts_with('/') {
        return Err(SpecError::Seccomp(format!(
            "localhost profile {path:?} must be an absolute path"
        )));
    }
    let f = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SpecError::Seccomp(format!("localhost profile {path} not found"))
        } else {
            SpecError::Seccomp(format!("read localhost profile {path}: {e}"))
        }
    })?;
    let mut text = String::new();
    f.take(MAX_PROFILE)
        .read_to_string(&mut text)
        .map_err(|e| SpecError::Seccomp(format!("read localhost profile {path}: {e}")))?;
    parse(&text, caps)
        .map_err(|e| SpecError::Seccomp(format!("invalid localhost profile {path}: {e}")))
}

/// Docker's architecture names of the native one (`includes.arches`).
fn native_arch_names() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["amd64", "x86_64"],
        "x86" => &["386", "x86"],
        "aarch64" => &["arm64", "aarch64"],
        "arm" => &["arm"],
        "s390x" => &["s390x"],
        "riscv64" => &["riscv64"],
        _ => &[],
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Does a Docker-format `includes`/`excludes` filter let this rule apply?
fn applies(rule: &Value, caps: &Caps) -> bool {
    let has_cap = |n: &String| caps::parse(n).map(|c| caps.has(c)).unwrap_or(false);
    let native = native_arch_names();
    let on_arch = |a: &String| native.contains(&a.as_str());
    if let Some(inc) = rule.get("includes") {
        let need_caps = strings(inc.get("caps"));
        if !need_caps.iter().all(has_cap) {
            return false;
        }
        let arches = strings(inc.get("arches"));
        if !arches.is_empty() && !arches.iter().any(on_arch) {
            return false;
        }
    }
    if let Some(exc) = rule.get("excludes") {
        if strings(exc.get("caps")).iter().any(has_cap) {
            return false;
        }
        if strings(exc.get("arches")).iter().any(on_arch) {
            return false;
        }
    }
    true
}

/// Parse an OCI or Docker-format profile.
pub fn parse(text: &str, caps: &Caps) -> Result<LinuxSeccomp, String> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| "the profile is not a JSON object".to_string())?;
    if !obj.contains_key("architectures")
        && let Some(map) = obj.remove("archMap")
    {
        let native = seccomp_default::architectures();
        let native_names: Vec<String> = native
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        let mut arches = Vec::new();
        for entry in map.as_array().into_iter().flatten() {
            let main = entry
                .get("architecture")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if native_names.first() == Some(&main) || native_names.contains(&main) {
                arches.push(Value::String(main));
                arches.extend(
                    strings(entry.get("subArchitectures"))
                        .into_iter()
                        .map(Value::String),
                );
            }
        }
        obj.insert("architectures".into(), Value::Array(arches));
    }
    obj.remove("archMap");
    if let Some(Value::Array(rules)) = obj.get_mut("syscalls") {
        rules.retain(|r| applies(r, caps));
        for r in rules.iter_mut() {
            if let Some(o) = r.as_object_mut() {
                if !o.contains_key("names")
                    && let Some(name) = o.remove("name")
                {
                    o.insert("names".into(), Value::Array(vec![name]));
                }
                o.remove("includes");
                o.remove("excludes");
                o.remove("comment");
            }
        }
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}
