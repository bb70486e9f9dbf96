//! The gRPC edge: thin tonic services that validate a request, delegate, and map typed errors to status codes.
//!
//! Only this module speaks `tonic::Status`; everything below returns typed errors.

mod admin;
mod image;
mod runtime;

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio_stream::Stream;

use crate::config::Config;
use crate::store::{DAEMON, Store};

pub use admin::AdminServer;
pub use image::ImageServer;
pub use runtime::RuntimeServer;

/// A server-streaming response, as the CRI's Stream* list RPCs return.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// What every service shares: the effective config, the metadata store and the kubelet-pushed settings.
pub struct Berth {
    pub config: Config,
    pub store: Store,
    pub images: Arc<berth_snapshotter::ImageStore>,
    pod_cidr: Mutex<String>,
}

const POD_CIDR_KEY: &str = "pod_cidr";

impl Berth {
    pub fn new(
        config: Config,
        store: Store,
        images: Arc<berth_snapshotter::ImageStore>,
    ) -> Result<Arc<Berth>, crate::store::StoreError> {
        let pod_cidr = store
            .get::<String>(DAEMON, POD_CIDR_KEY)?
            .unwrap_or_default();
        Ok(Arc::new(Berth {
            config,
            store,
            images,
            pod_cidr: Mutex::new(pod_cidr),
        }))
    }

    /// The pod CIDR the kubelet last gave us (`UpdateRuntimeConfig`); empty until it does.
    pub fn pod_cidr(&self) -> String {
        self.pod_cidr.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn set_pod_cidr(&self, cidr: &str) -> Result<(), crate::store::StoreError> {
        self.store.put(DAEMON, POD_CIDR_KEY, &cidr)?;
        if let Ok(mut c) = self.pod_cidr.lock() {
            *c = cidr.to_string();
        }
        Ok(())
    }
}

#[allow(dead_code)]
/// The answer for an RPC that Berth does not serve yet: `Unimplemented`, naming what is missing, never a fake success.
pub(crate) fn unimplemented(rpc: &str, missing: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!("{rpc} is not implemented yet in berth: {missing}"))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::internal(e.to_string())
}

/// Maps an image-store error to the status a CRI client can act on; the message is the store's own.
pub(crate) fn image_error(e: berth_snapshotter::Error) -> tonic::Status {
    use berth_snapshotter::Error as E;
    use tonic::Code;
    let code = match &e {
        E::NotFound(_) => Code::NotFound,
        E::InvalidReference { .. } => Code::InvalidArgument,
        E::Unauthorized { .. } => Code::Unauthenticated,
        E::DigestMismatch { .. } | E::SizeMismatch { .. } => Code::DataLoss,
        E::HostileLayer { .. } | E::Invalid { .. } | E::InUse(_) => Code::FailedPrecondition,
        E::AlreadyExists(_) => Code::AlreadyExists,
        E::Unsupported(_) => Code::Unimplemented,
        E::Registry { status: 404, .. } => Code::NotFound,
        E::Registry {
            status: 401 | 403, ..
        } => Code::PermissionDenied,
        E::Registry { .. } | E::Unreachable { .. } => Code::Unavailable,
        _ => Code::Internal,
    };
    tonic::Status::new(code, e.to_string())
}
