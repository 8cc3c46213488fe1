//! Talking to drd: connect, handshake, send a request, collect events and the response.
//!
//! [`ask`] is the one way a command sends a request and waits for its reply; only
//! `shutdown` and `abort`, which print events as lines or ask twice on one connection,
//! use [`Client`] directly.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use drd_proto::codec::{self, frame_codec};
use drd_proto::{
    ClientFrame, ErrorReply, Event, Hello, Reply, Request, Response, ServerFrame, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::commands::Global;
use crate::progress::Bar;

/// What can go wrong between drctl and drd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("drd is not running at {path} ({reason}); start it (systemctl start drd) or point --socket / DRD_SOCKET at the right socket")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// What the connect said.
        reason: String,
    },
    /// The socket exists but we may not connect.
    #[error("cannot connect to {path}: permission denied; join the socket's group (usually drd) or run as root")]
    SocketPermission {
        /// The socket path.
        path: PathBuf,
    },
    /// The connection broke or timed out.
    #[error("connection to drd at {path} failed while {doing}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What we were doing.
        doing: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// drd closed the connection without answering.
    #[error("drd at {0} closed the connection without answering; it may be stopping (check journalctl -u drd)")]
    Closed(PathBuf),
    /// drd sent something we cannot read.
    #[error("drd sent a reply this drctl cannot read ({0}); is drctl the same version as drd?")]
    Protocol(String),
    /// drd answered with an error.
    #[error("{}", .0.message)]
    Refused(ErrorReply),
}

impl ClientError {
    /// drd answered a request with a reply meant for another one.
    pub fn unexpected(reply: &Reply) -> ClientError {
        ClientError::Protocol(format!("unexpected reply {reply:?}"))
    }
}

/// Connects to drd, sends `request` and returns its reply, showing the request's
/// progress events as a live bar (hidden for `--json`).
pub async fn ask(global: &Global, request: Request) -> Result<Reply, ClientError> {
    let mut client = Client::connect(&global.socket).await?;
    let mut bar = Bar::new(global.json);
    let reply = client.request(request, |event| bar.show(&event)).await;
    bar.finish();
    reply
}

/// A connection that has passed the handshake.
pub struct Client {
    conn: Framed<UnixStream, LengthDelimitedCodec>,
    path: PathBuf,
    /// The daemon's version, from the handshake.
    pub daemon_version: String,
}

impl Client {
    /// Connects to `path` and shakes hands.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|err| match err.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning {
                        path: path.to_owned(),
                        reason: if err.kind() == io::ErrorKind::NotFound {
                            "no socket there".to_owned()
                        } else {
                            "nothing listens on the socket".to_owned()
                        },
                    }
                }
                io::ErrorKind::PermissionDenied => ClientError::SocketPermission {
                    path: path.to_owned(),
                },
                _ => ClientError::Io {
                    path: path.to_owned(),
                    doing: "connecting",
                    source: err,
                },
            })?;
        let mut client = Client {
            conn: Framed::new(stream, frame_codec()),
            path: path.to_owned(),
            daemon_version: String::new(),
        };
        let sent = client
            .send(&ClientFrame::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                client: format!("drctl {}", env!("CARGO_PKG_VERSION")),
            }))
            .await;
        // A daemon that turns us away (busy, stopping) may close before our hello
        // lands; its reason is still waiting to be read, and says more than EPIPE.
        match (client.receive().await, sent) {
            (Ok(ServerFrame::Response(Response::Error(reply))), _) => {
                Err(ClientError::Refused(reply))
            }
            (_, Err(err)) => Err(err),
            (Ok(ServerFrame::Welcome(welcome)), Ok(())) => {
                client.daemon_version = welcome.daemon_version;
                Ok(client)
            }
            (Ok(other), Ok(())) => Err(ClientError::Protocol(format!(
                "expected a handshake reply, got {other:?}"
            ))),
            (Err(err), Ok(())) => Err(err),
        }
    }

    /// Sends `request` and waits for its response, passing each event to `on_event`.
    pub async fn request(
        &mut self,
        request: Request,
        mut on_event: impl FnMut(Event),
    ) -> Result<Reply, ClientError> {
        self.send(&ClientFrame::Request(request)).await?;
        loop {
            match self.receive().await? {
                ServerFrame::Event(event) => on_event(event),
                ServerFrame::Response(Response::Ok(reply)) => return Ok(reply),
                ServerFrame::Response(Response::Error(reply)) => {
                    return Err(ClientError::Refused(reply))
                }
                ServerFrame::Welcome(_) => {
                    return Err(ClientError::Protocol(
                        "unexpected second handshake".to_owned(),
                    ))
                }
            }
        }
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let bytes = codec::encode(frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.conn
            .send(Bytes::from(bytes))
            .await
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                doing: "sending the request",
                source,
            })
    }

    async fn receive(&mut self) -> Result<ServerFrame, ClientError> {
        match self.conn.next().await {
            None => Err(ClientError::Closed(self.path.clone())),
            Some(Err(source)) => Err(ClientError::Io {
                path: self.path.clone(),
                doing: "reading the reply",
                source,
            }),
            Some(Ok(frame)) => {
                codec::decode(&frame).map_err(|e| ClientError::Protocol(e.to_string()))
            }
        }
    }
}
