//! Berth's own `berth.v1.Images` service: what the CLI needs beyond the CRI (pull progress, archive import).

use std::sync::Arc;

use berth_snapshotter::{Auth, ProgressEvent, Reference};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use super::{Berth, ResponseStream, image_error};
use crate::admin::images_server::Images;
use crate::admin::pull_progress::Kind;
use crate::admin::*;

pub struct AdminServer {
    berth: Arc<Berth>,
}

impl AdminServer {
    pub fn new(berth: Arc<Berth>) -> Self {
        AdminServer { berth }
    }
}

fn progress(event: ProgressEvent) -> Option<PullProgress> {
    let p = |kind: Kind, digest: String, downloaded: u64, size: u64| PullProgress {
        kind: kind as i32,
        digest,
        downloaded,
        size,
        ..Default::default()
    };
    Some(match event {
        ProgressEvent::Resolved {
            manifest_digest,
            layers,
            total_bytes,
            ..
        } => PullProgress {
            kind: Kind::Resolved as i32,
            digest: manifest_digest,
            layers: layers as u32,
            total_bytes,
            ..Default::default()
        },
        ProgressEvent::LayerCached { digest, size } => p(Kind::LayerCached, digest, size, size),
        ProgressEvent::LayerStarted { digest, size } => p(Kind::LayerStarted, digest, 0, size),
        ProgressEvent::LayerProgress {
            digest,
            downloaded,
            size,
        } => p(Kind::LayerProgress, digest, downloaded, size),
        ProgressEvent::LayerDone { digest, size } => p(Kind::LayerDone, digest, size, size),
        ProgressEvent::Done { id } => p(Kind::Done, id, 0, 0),
        _ => return None,
    })
}

#[tonic::async_trait]
impl Images for AdminServer {
    type PullStream = ResponseStream<PullProgress>;

    async fn pull(&self, req: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let req = req.into_inner();
        let reference = Reference::parse(req.reference.trim()).map_err(image_error)?;
        let auth = (!req.username.is_empty()).then(|| Auth::basic(&req.username, &req.password));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let berth = self.berth.clone();
        tokio::spawn(async move {
            let events = tx.clone();
            let result = berth
                .images
                .pull(&reference, auth.as_ref(), move |e| {
                    if let Some(p) = progress(e) {
                        let _ = events.send(Ok(p));
                    }
                })
                .await;
            match result {
                Ok(image) => info!(image = %reference, id = %image.id, "pulled"),
                Err(e) => {
                    let _ = tx.send(Err(image_error(e)));
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn import(
        &self,
        req: Request<ImportRequest>,
    ) -> Result<Response<ImportResponse>, Status> {
        let path = std::path::PathBuf::from(req.into_inner().path);
        if !path.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "import path {} must be absolute (it is read by the daemon)",
                path.display()
            )));
        }
        if !path.is_file() {
            return Err(Status::not_found(format!(
                "no archive at {}",
                path.display()
            )));
        }
        let images = self.berth.images.import(&path).await.map_err(image_error)?;
        info!(archive = %path.display(), images = images.len(), "imported");
        Ok(Response::new(ImportResponse {
            images: images
                .into_iter()
                .map(|i| ImportedImage {
                    id: i.id,
                    repo_tags: i.repo_tags,
                })
                .collect(),
        }))
    }
}
