//! The gRPC edge: thin tonic services that validate a request, delegate, and map typed errors to status codes.
//!
//! Only this module speaks `tonic::Status`; everything below returns typed errors.

mod admin;
mod containers;
mod events;
mod image;
mod pods;
mod runtime;
mod stats;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

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
    pub runtimes: crate::container::Runtimes,
    pub events: events::Events,
    pub cni: berth_cni::client::CniClient,
    /// Where `berth-pinns`, `berth-monitor` and `berth-runtime` live: beside the `berth` binary.
    pub bin_dir: PathBuf,
    /// The previous CPU sample of each container and pod, for `usage_nano_cores`.
    cpu_samples: stats::CpuSamples,
    pod_cidr: Mutex<String>,
    me: Weak<Berth>,
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
        let bin_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin"));
        let runtimes = crate::container::Runtimes::new(&config, &bin_dir);
        let mut bin_dirs = vec![bin_dir.clone()];
        bin_dirs.extend(config.cni.bin_dirs.iter().cloned());
        let cni = berth_cni::client::CniClient::new(berth_cni::client::ClientOptions {
            conf_dir: config.cni.conf_dir.clone(),
            bin_dirs,
            cache_dir: config.root.join("cni"),
            timeout: std::time::Duration::from_secs(60),
        });
        Ok(Arc::new_cyclic(|me| Berth {
            config,
            store,
            images,
            runtimes,
            events: events::Events::default(),
            cni,
            bin_dir,
            cpu_samples: stats::CpuSamples::default(),
            pod_cidr: Mutex::new(pod_cidr),
            me: me.clone(),
        }))
    }

    /// An owning handle for work moved to a blocking thread.
    pub(crate) fn self_arc(&self) -> Arc<Berth> {
        self.me
            .upgrade()
            .expect("a Berth is only reached through its Arc")
    }

    /// Finishes or undoes what a crash interrupted: pods and containers left half-created.
    pub async fn recover(&self) -> Result<(), tonic::Status> {
        self.recover_containers()?;
        self.recover_pods().await
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
