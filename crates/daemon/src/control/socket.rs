//! Binding the control socket: refuse to start beside a live daemon, clear a stale
//! socket file, set the mode right after bind, remove the file on exit.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{chown, Gid};
use tokio::net::{UnixListener, UnixStream};

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another daemon answers on the socket.
    #[error("another drd is already running on {0}; stop it first (systemctl stop drd) or pick another daemon.socket")]
    InUse(PathBuf),
    /// Something that is not a socket stands where the socket should go.
    #[error("{0} exists and is not a socket; remove it or pick another daemon.socket")]
    NotASocket(PathBuf),
    /// An I/O step failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Mode of the socket file: owner and group may connect, nobody else.
const SOCKET_MODE: u32 = 0o660;

/// The bound listener; dropping it removes the socket file.
pub struct BoundSocket {
    /// The listener.
    pub listener: UnixListener,
    path: PathBuf,
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!(cause = %err, path = %self.path.display(), "cannot remove socket");
            }
        }
    }
}

/// Binds `path`, first making sure no other daemon owns it.
pub async fn bind(path: &Path, group: Option<u32>) -> Result<BoundSocket, SocketError> {
    let io_err = |op, source| SocketError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path).await {
            Ok(_) => return Err(SocketError::InUse(path.to_owned())),
            Err(_) => {
                tracing::info!(path = %path.display(), "removing stale socket left by a daemon that is gone");
                std::fs::remove_file(path).map_err(|e| io_err("remove stale socket", e))?;
            }
        },
        Ok(_) => return Err(SocketError::NotASocket(path.to_owned())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_err("inspect", err)),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err("create the folder of", e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io_err("bind", e))?;
    let bound = BoundSocket {
        listener,
        path: path.to_owned(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| io_err("set the mode of", e))?;
    if let Some(gid) = group {
        chown(path, None, Some(Gid::from_raw(gid)))
            .map_err(|e| io_err("set the group of", e.into()))?;
    }
    Ok(bound)
}
