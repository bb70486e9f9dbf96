//! `berth serve`: owns the CRI socket for the daemon's lifetime and serves both CRI services on it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use crate::admin::images_server::ImagesServer;
use crate::api::image_service_server::ImageServiceServer;
use crate::api::runtime_service_server::RuntimeServiceServer;
use crate::config::{Config, SnapshotterKind};
use crate::server::{AdminServer, Berth, ImageServer, RuntimeServer};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "another berth daemon (pid {pid}) is already serving {socket}; stop it first or choose another socket"
    )]
    AlreadyRunning { socket: PathBuf, pid: String },
    #[error(
        "{socket} is in use by another process (a connection to it succeeded); stop it or choose another socket"
    )]
    SocketInUse { socket: PathBuf },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot open the image store: {0}")]
    Images(#[from] berth_snapshotter::Error),
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Held for the daemon's lifetime: an exclusive lock beside the socket says "this socket is served".
///
/// A lock rather than the socket file itself, because a daemon killed with -9 leaves its socket file behind and
/// that stale file must not keep the next daemon from starting; the kernel drops the lock with the process.
pub struct SocketLock {
    _lock: Flock<File>,
}

impl SocketLock {
    pub fn acquire(socket: &Path) -> Result<SocketLock, ServeError> {
        let path = lock_path(socket);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                lock.set_len(0).map_err(io_err(&path))?;
                lock.rewind().map_err(io_err(&path))?;
                write!(lock, "{}", std::process::id()).map_err(io_err(&path))?;
                Ok(SocketLock { _lock: lock })
            }
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                Err(ServeError::AlreadyRunning {
                    socket: socket.to_path_buf(),
                    pid: if pid.trim().is_empty() {
                        "unknown".into()
                    } else {
                        pid.trim().into()
                    },
                })
            }
        }
    }
}

fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    socket.with_file_name(name)
}

/// Binds the CRI socket: replaces a stale file, refuses a live listener, and restricts access to root and its group.
fn bind_socket(socket: &Path) -> Result<UnixListener, ServeError> {
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(ServeError::SocketInUse {
                socket: socket.to_path_buf(),
            });
        }
        warn!(socket = %socket.display(), "removing stale socket file");
        std::fs::remove_file(socket).map_err(io_err(socket))?;
    }
    let listener = UnixListener::bind(socket).map_err(io_err(socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err(socket))?;
    Ok(listener)
}

/// Runs the daemon until SIGTERM or SIGINT, then stops accepting, finishes in-flight calls and removes the socket.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    for dir in [&config.root, &config.state] {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .map_err(io_err(dir))?;
    }
    if let Some(parent) = config.socket.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let _lock = SocketLock::acquire(&config.socket)?;
    let listener = bind_socket(&config.socket)?;
    let socket = config.socket.clone();
    // From here on the socket file is ours: remove it on every way out.
    let result = run(config, listener).await;
    if let Err(e) = std::fs::remove_file(&socket) {
        warn!(socket = %socket.display(), error = %e, "cannot remove socket");
    }
    result
}

async fn run(config: Config, listener: UnixListener) -> Result<(), ServeError> {
    let store = Store::open(&config.db_path())?;
    let socket = config.socket.clone();
    let kind = match config.snapshotter {
        SnapshotterKind::Overlayfs => berth_snapshotter::SnapshotterKind::Overlayfs,
        SnapshotterKind::Native => berth_snapshotter::SnapshotterKind::Native,
    };
    // Opening runs GC, which also clears what a crash left half-done (partial blobs, half-unpacked layers).
    let images = berth_snapshotter::ImageStore::open(
        &config.root,
        config.registry_config(),
        kind,
        store.database(),
    )
    .await?;
    let berth = Berth::new(config, store, Arc::new(images))?;
    info!(socket = %socket.display(), version = env!("CARGO_PKG_VERSION"), "berth serving CRI v1");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(RuntimeServer::new(berth.clone())))
            .add_service(ImageServiceServer::new(ImageServer::new(berth.clone())))
            .add_service(ImagesServer::new(AdminServer::new(berth)))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stop_rx.await;
            }),
    );
    tokio::select! {
        result = &mut server => return finished(result),
        () = shutdown_signal() => {}
    }
    let _ = stop_tx.send(());
    // Clients such as the kubelet keep their HTTP/2 connection open for ever; in-flight calls get a grace period,
    // idle connections do not hold the daemon up.
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(result) => finished(result)?,
        Err(_) => {
            warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; closing them")
        }
    }
    info!("berth stopped");
    Ok(())
}

/// How long in-flight calls may run on after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn finished(
    result: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), ServeError> {
    match result {
        Ok(r) => Ok(r?),
        Err(e) => Err(ServeError::Io {
            path: "grpc server task".into(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (t, i) => {
            warn!(
                term = t.is_ok(),
                int = i.is_ok(),
                "cannot install signal handlers; stop with SIGKILL"
            );
            return std::future::pending().await;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(signal = name, "shutting down");
}
