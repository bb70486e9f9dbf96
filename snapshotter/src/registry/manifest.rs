//! OCI / Docker schema-2 manifest and index documents, and picking the host's platform out of an index.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Everything we can parse, in our order of preference, for the `Accept` header.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on, in OCI spelling.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: variant.map(str::to_string),
        }
    }

    fn matches(&self, want: &Platform) -> bool {
        self.os == want.os
            && self.architecture == want.architecture
            && match (&self.variant, &want.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexManifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A fetched manifest document of either kind.
pub enum Document {
    Image(Manifest),
    Index(IndexManifest),
}

/// Parses manifest bytes, trusting the `mediaType` field, then the HTTP content type, then the shape.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Document> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::invalid("manifest", e))?;
    let mt = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .or(content_type)
        .unwrap_or("");
    let is_index =
        mt == OCI_INDEX || mt == DOCKER_LIST || (mt.is_empty() && v.get("manifests").is_some());
    if is_index {
        return serde_json::from_value(v)
            .map(Document::Index)
            .map_err(|e| Error::invalid("image index", e));
    }
    if mt.contains("distribution.manifest.v1")
        || v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1)
    {
        return Err(Error::Unsupported(
            "docker schema 1 manifests are deprecated; push the image again with a current client"
                .into(),
        ));
    }
    serde_json::from_value(v)
        .map(Document::Image)
        .map_err(|e| Error::invalid("image manifest", e))
}

/// Picks the manifest for `want` out of an index.
pub fn select_platform<'a>(index: &'a IndexManifest, want: &Platform) -> Result<&'a Descriptor> {
    let candidates = || {
        index
            .manifests
            .iter()
            .filter(|d| d.platform.as_ref().is_some_and(|p| p.matches(want)))
    };
    candidates()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_ref()) == want.variant.as_ref())
        .or_else(|| candidates().next())
        .ok_or_else(|| {
            let have: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| {
                    format!(
                        "{}/{}{}",
                        p.os,
                        p.architecture,
                        p.variant
                            .as_ref()
                            .map(|v| format!("/{v}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            Error::NotFound(format!(
                "no manifest for platform {}/{} in the image index (it has: {})",
                want.os,
                want.architecture,
                have.join(", ")
            ))
        })
}

/// The parts of an image config the runtime needs (`config` in the OCI image config).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RuntimeConfig {
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "Env", skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(rename = "StopSignal", skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(rename = "Volumes", skip_serializing_if = "Option::is_none")]
    pub volumes: Option<HashMap<String, serde_json::Value>>,
    #[serde(rename = "ExposedPorts", skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<HashMap<String, serde_json::Value>>,
    #[serde(rename = "Labels", skip_serializing_if = "Option::is_none")]
    pub labels: Option<HashMap<String, String>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// An image config document, reduced to what we use.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageConfigDoc {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RuntimeConfig>,
    pub rootfs: RootFs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_host_platform_and_prefers_exact_variant() {
        let idx: IndexManifest = serde_json::from_str(r#"{"schemaVersion":2,"manifests":[
            {"mediaType":"x","digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"x","digest":"sha256:b","size":1,"platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"x","digest":"sha256:c","size":1,"platform":{"os":"windows","architecture":"amd64"}}]}"#).unwrap();
        let amd = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        assert_eq!(select_platform(&idx, &amd).unwrap().digest, "sha256:b");
        let s390 = Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        };
        assert!(
            select_platform(&idx, &s390)
                .unwrap_err()
                .to_string()
                .contains("linux/arm64/v8")
        );
    }
}
