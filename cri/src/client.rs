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

impl Client {
    /// Stops and removes every pod, and with them every container: how a test or benchmark leaves nothing behind.
    /// Keeps going past failures; the first one is returned.
    pub async fn remove_all_pods(&mut self) -> Result<(), tonic::Status> {
        use crate::api::{ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
        let pods = self
            .runtime
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await?;
        let mut first = Ok(());
        for p in pods.into_inner().items {
            let stop = StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            };
            let stopped = self.runtime.stop_pod_sandbox(stop).await.map(|_| ());
            let remove = RemovePodSandboxRequest {
                pod_sandbox_id: p.id,
            };
            let removed = self.runtime.remove_pod_sandbox(remove).await.map(|_| ());
            if first.is_ok() {
                first = stopped.and(removed);
            }
        }
        first
    }
}

/// [`Client::remove_all_pods`] from synchronous code such as `Drop`, on a thread and runtime of its own (a Drop may
/// run inside another tokio runtime, which must not be blocked on). Best effort: a daemon that is gone is fine.
pub fn remove_all_pods_blocking(socket: &Path) {
    let socket = socket.to_path_buf();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if let Ok(mut c) = Client::connect(&socket).await {
                let _ = c.remove_all_pods().await;
            }
        })
    })
    .join();
}
