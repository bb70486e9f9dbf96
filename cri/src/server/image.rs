//! The CRI ImageService.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Berth, ResponseStream, unimplemented};
use crate::api::image_service_server::ImageService;
use crate::api::*;

const IMAGES: &str = "the image store (pull, content store, snapshotters)";

pub struct ImageServer {
    #[allow(dead_code)]
    berth: Arc<Berth>,
}

impl ImageServer {
    pub fn new(berth: Arc<Berth>) -> Self {
        ImageServer { berth }
    }
}

#[tonic::async_trait]
impl ImageService for ImageServer {
    async fn list_images(
        &self,
        _: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        Err(unimplemented("ListImages", IMAGES))
    }

    type StreamImagesStream = ResponseStream<StreamImagesResponse>;

    async fn stream_images(
        &self,
        _: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        Err(unimplemented("StreamImages", IMAGES))
    }

    async fn image_status(
        &self,
        _: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        Err(unimplemented("ImageStatus", IMAGES))
    }

    async fn pull_image(
        &self,
        _: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        Err(unimplemented("PullImage", IMAGES))
    }

    async fn remove_image(
        &self,
        _: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        Err(unimplemented("RemoveImage", IMAGES))
    }

    async fn image_fs_info(
        &self,
        _: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        Err(unimplemented("ImageFsInfo", IMAGES))
    }
}
