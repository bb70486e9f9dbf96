//! Uploads images to a registry over the OCI distribution API (monolithic POST + PUT uploads).

use std::time::Duration;

use base64::Engine as _;

use crate::image::{Image, Index};
use crate::{Registry, Result};

pub struct Pusher {
    base: String,
    agent: ureq::Agent,
    basic: Option<String>,
}

impl Pusher {
    /// A pusher for `registry`, using its htpasswd credentials if it has any.
    pub fn new(registry: &Registry) -> Pusher {
        let mut p = Pusher::with_url(&registry.url());
        if let Some((u, pw)) = registry.credentials() {
            p = p.basic_auth(u, pw);
        }
        p
    }

    /// A pusher for any registry base URL (`http://host:port`).
    pub fn with_url(base: &str) -> Pusher {
        Pusher {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            basic: None,
        }
    }

    pub fn basic_auth(mut self, user: &str, pass: &str) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        self.basic = Some(format!("Basic {token}"));
        self
    }

    fn req(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match &self.basic {
            Some(h) => r.set("Authorization", h),
            None => r,
        }
    }

    /// Uploads one blob unless the registry already has it.
    pub fn push_blob(&self, repo: &str, digest: &str, bytes: &[u8]) -> Result<()> {
        let head = self
            .req("HEAD", &format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .call();
        if head.is_ok() {
            return Ok(());
        }
        let resp = self
            .req("POST", &format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .call()
            .map_err(|e| format!("starting blob upload to {repo}: {e}"))?;
        let location = resp
            .header("Location")
            .ok_or("upload response without Location")?
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        self.req("PUT", &format!("{location}{sep}digest={digest}"))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(bytes)
            .map_err(|e| format!("uploading blob {digest} to {repo}: {e}"))?;
        Ok(())
    }

    /// PUTs a manifest under `reference` (a tag or a digest).
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        self.req(
            "PUT",
            &format!("{}/v2/{repo}/manifests/{reference}", self.base),
        )
        .set("Content-Type", media_type)
        .send_bytes(bytes)
        .map_err(|e| {
            let detail = match e {
                ureq::Error::Status(code, r) => {
                    format!("{code}: {}", r.into_string().unwrap_or_default())
                }
                other => other.to_string(),
            };
            format!("putting manifest {repo}:{reference}: {detail}")
        })?;
        Ok(())
    }

    fn push_image_blobs(&self, repo: &str, image: &Image) -> Result<()> {
        for (digest, bytes) in image.blobs() {
            self.push_blob(repo, &digest, bytes)?;
        }
        Ok(())
    }

    /// Pushes an image's blobs and its manifest under `tag`; returns the manifest digest.
    pub fn push_image(&self, repo: &str, tag: &str, image: &Image) -> Result<String> {
        self.push_image_blobs(repo, image)?;
        self.push_manifest(repo, tag, &image.manifest.media_type, &image.manifest.bytes)?;
        Ok(image.digest().to_string())
    }

    /// Pushes an image reachable only by its manifest digest (no tag).
    pub fn push_image_by_digest(&self, repo: &str, image: &Image) -> Result<String> {
        self.push_image_blobs(repo, image)?;
        self.push_manifest(
            repo,
            image.digest(),
            &image.manifest.media_type,
            &image.manifest.bytes,
        )?;
        Ok(image.digest().to_string())
    }

    /// Pushes every platform image by digest, then the index under `tag`; returns the index digest.
    pub fn push_index(&self, repo: &str, tag: &str, index: &Index) -> Result<String> {
        for image in &index.images {
            self.push_image_by_digest(repo, image)?;
        }
        self.push_manifest(repo, tag, &index.manifest.media_type, &index.manifest.bytes)?;
        Ok(index.digest().to_string())
    }
}
