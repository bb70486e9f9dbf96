//! The CRI ImageService: a thin adapter over the snapshotter's image store.

use std::collections::HashMap;
use std::sync::Arc;

use berth_snapshotter::{Auth, Image as StoredImage, Reference};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info, info_span};

use super::{Berth, ResponseStream, image_error, internal};
use crate::api::image_service_server::ImageService;
use crate::api::*;

/// Images per message of `StreamImages`: small enough to stay far below gRPC's 4 MiB default message limit.
const STREAM_PAGE: usize = 100;

pub struct ImageServer {
    berth: Arc<Berth>,
}

impl ImageServer {
    pub fn new(berth: Arc<Berth>) -> Self {
        ImageServer { berth }
    }

    fn list(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>, Status> {
        let wanted = filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let images = match wanted {
            Some(name) => match self.berth.images.get(&name) {
                Ok(i) => vec![i],
                Err(e) if e.is_not_found() => vec![],
                Err(e) => return Err(image_error(e)),
            },
            None => self.berth.images.list().map_err(image_error)?,
        };
        Ok(images.iter().map(|i| self.to_cri(i)).collect())
    }

    fn to_cri(&self, image: &StoredImage) -> Image {
        let (uid, username) = image_user(image.config.user.as_deref().unwrap_or(""));
        Image {
            id: image.id.clone(),
            repo_tags: image.repo_tags.clone(),
            repo_digests: image.repo_digests.clone(),
            size: image.size,
            uid: uid.map(|value| Int64Value { value }),
            username,
            spec: Some(ImageSpec {
                image: image.id.clone(),
                ..Default::default()
            }),
            pinned: self.is_pinned(image),
        }
    }

    fn is_pinned(&self, image: &StoredImage) -> bool {
        self.berth.config.pinned_images.iter().any(|p| {
            Reference::parse(p).is_ok_and(|r| {
                let tagged = r.tagged().unwrap_or_default();
                image.repo_tags.contains(&tagged)
                    || r.digest()
                        .is_some_and(|d| image.repo_digests.contains(&r.with_digest(d)))
            })
        })
    }
}

/// The image config's `User` as the CRI reports it: a numeric user is a uid, anything else a name to resolve
/// later against the container's /etc/passwd. `user:group` keeps only the user part.
fn image_user(user: &str) -> (Option<i64>, String) {
    let user = user.split(':').next().unwrap_or("");
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

fn auth_from_cri(auth: Option<AuthConfig>) -> Option<Auth> {
    let a = auth?;
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    let auth = Auth {
        username: non_empty(a.username),
        password: non_empty(a.password),
        auth: non_empty(a.auth),
        identity_token: non_empty(a.identity_token),
        registry_token: non_empty(a.registry_token),
    };
    (auth != Auth::default()).then_some(auth)
}

fn image_name(spec: Option<ImageSpec>, rpc: &str) -> Result<String, Status> {
    match spec.map(|s| s.image) {
        Some(name) if !name.trim().is_empty() => Ok(name.trim().to_string()),
        _ => Err(Status::invalid_argument(format!(
            "{rpc}: image.image must name an image (a reference or an id)"
        ))),
    }
}

#[tonic::async_trait]
impl ImageService for ImageServer {
    async fn list_images(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let images = self.list(req.into_inner().filter)?;
        Ok(Response::new(ListImagesResponse { images }))
    }

    type StreamImagesStream = ResponseStream<StreamImagesResponse>;

    async fn stream_images(
        &self,
        req: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let images = self.list(req.into_inner().filter)?;
        let pages: Vec<Result<StreamImagesResponse, Status>> = images
            .chunks(STREAM_PAGE)
            .map(|c| Ok(StreamImagesResponse { images: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(pages))))
    }

    async fn image_status(
        &self,
        req: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image, "ImageStatus")?;
        let image = match self.berth.images.get(&name) {
            Ok(i) => i,
            // The CRI's "not present" answer is an empty image, not an error.
            Err(e) if e.is_not_found() => return Ok(Response::new(ImageStatusResponse::default())),
            Err(e) => return Err(image_error(e)),
        };
        let mut info = HashMap::new();
        if req.verbose {
            let config = self.berth.images.config_json(&image).map_err(image_error)?;
            let config: serde_json::Value = serde_json::from_slice(&config).map_err(internal)?;
            let verbose = serde_json::json!({
                "id": image.id,
                "manifestDigest": image.manifest_digest,
                "chainIds": image.layers.iter().map(|l| &l.chain_id).collect::<Vec<_>>(),
                "snapshotter": self.berth.config.snapshotter.to_string(),
                "imageSpec": config,
            });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(Response::new(ImageStatusResponse {
            image: Some(self.to_cri(&image)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        req: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image, "PullImage")?;
        let reference = Reference::parse(&name).map_err(image_error)?;
        let auth = auth_from_cri(req.auth);
        let span = info_span!("pull", image = %reference);
        let started = std::time::Instant::now();
        let image = self
            .berth
            .images
            .pull(&reference, auth.as_ref(), |_| {})
            .instrument(span)
            .await
            .map_err(image_error)?;
        info!(image = %reference, id = %image.id, elapsed = ?started.elapsed(), "pulled");
        Ok(Response::new(PullImageResponse {
            image_ref: image.id,
        }))
    }

    async fn remove_image(
        &self,
        req: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let name = image_name(req.into_inner().image, "RemoveImage")?;
        match self.berth.images.remove(&name).await {
            Ok(()) => info!(image = %name, "removed"),
            // Idempotent, as the CRI asks: an image already gone is not an error.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(image_error(e)),
        }
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        let images = self.berth.images.clone();
        let usage = tokio::task::spawn_blocking(move || images.fs_usage())
            .await
            .map_err(internal)?
            .map_err(image_error)?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default();
        let mountpoint = self.berth.images.root().display().to_string();
        let fs = |u: berth_snapshotter::Usage| FilesystemUsage {
            timestamp,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: mountpoint.clone(),
            }),
            used_bytes: Some(UInt64Value { value: u.bytes }),
            inodes_used: Some(UInt64Value { value: u.inodes }),
        };
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![fs(usage.images)],
            container_filesystems: vec![fs(usage.containers)],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_user_is_a_uid_or_a_name() {
        assert_eq!(image_user(""), (None, String::new()));
        assert_eq!(image_user("1000"), (Some(1000), String::new()));
        assert_eq!(image_user("1000:50"), (Some(1000), String::new()));
        assert_eq!(image_user("nobody"), (None, "nobody".into()));
        assert_eq!(image_user("www:www"), (None, "www".into()));
    }

    #[test]
    fn empty_auth_is_no_auth() {
        assert!(auth_from_cri(None).is_none());
        assert!(auth_from_cri(Some(AuthConfig::default())).is_none());
        let a = auth_from_cri(Some(AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(a.username.as_deref(), Some("u"));
    }
}
