//! A CRI client over the daemon's unix socket, for Berth's own CLI commands and tests.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::admin::images_client::ImagesClient;
use crate::api::image_service_client::ImageServiceClient;
use crate::api::runtime_service_client::RuntimeServiceClient;

/// A connection to a running daemon; both services share one HTTP/2 channel.
#[derive(Clone)]
pub struct Client {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    /// Berth's own service (pull progress, import).
    pub admin: ImagesClient<Channel>,
}

impl Client {
    pub async fn connect(socket: &Path) -> Result<Client, tonic::transport::Error> {
        let channel = channel(socket).await?;
        Ok(Client {
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel.clone()),
            admin: ImagesClient::new(channel),
        })
    }
}

/// A gRPC channel to a unix socket (the URI is a placeholder tonic requires; the connector ignores it).
pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket: PathBuf = socket.to_path_buf();
    Endpoint::from_static("http://berth.sock")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
}
