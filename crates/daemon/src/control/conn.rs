//! One connection: who is calling first (a peer with no role, and no deadman switch of
//! its own to ping, is refused right after its hello, and one with a role takes a slot
//! from `limits` or is told it is busy), then the handshake, then requests one at a
//! time, each answered by events and a response. Anything malformed gets an error reply where the peer can still read
//! one, and the connection is closed; the daemon goes on serving everyone else.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use drd_core::audit::Outcome;
use drd_core::config::deadman::switches_of;
use drd_core::config::DaemonConfig;
use drd_proto::codec::{self, frame_codec};
use drd_proto::{
    ClientFrame, ErrorKind, ErrorReply, Event, Hello, Request, Response, Role, ServerFrame,
    Welcome, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::auth::Peer;
use super::handlers;
use super::limits::{Limits, Slot};
use super::server::Gate;
use crate::state::Shared;

type Conn = Framed<UnixStream, LengthDelimitedCodec>;

/// Why a connection ends early.
enum Close {
    /// The peer went away, or a write timed out: nothing more to say.
    Gone,
    /// The peer sent something we cannot serve; say why, then close.
    Reply(ErrorKind, String),
}

pub(super) async fn handle(stream: UnixStream, shared: Arc<Shared>, gate: Arc<Gate>) {
    let peer = match Peer::of(&stream) {
        Ok(peer) => peer,
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read peer credentials; closing");
            return;
        }
    };
    let mut conn = Framed::new(stream, frame_codec());
    let config = shared.config();
    let daemon = &config.config.daemon;
    // A switch's own `users` / `groups` hold no role but may ping that switch: they
    // take a slot as a viewer would, and `answer` lets them ping only their own.
    let pinger = !switches_of(&config.config.deadman, peer.uid, &peer.groups).is_empty();
    let slot_role = peer.role(&config.roles).or(pinger.then_some(Role::Viewer));
    let outcome = match slot_role {
        None => {
            Err(
                refuse_without_role(&mut conn, &shared, &gate, &peer, daemon.handshake_timeout)
                    .await,
            )
        }
        Some(role) => match admit(&gate, daemon, &peer, role) {
            Err(close) => Err(close),
            Ok(_slot) => match handshake(&mut conn, daemon.handshake_timeout).await {
                Ok(hello) => {
                    tracing::debug!(uid = peer.uid, pid = peer.pid, client = %hello.client, "client connected");
                    serve_requests(&mut conn, &shared, &peer, daemon.idle_timeout).await
                }
                Err(close) => Err(close),
            },
        },
    };
    if let Err(Close::Reply(kind, message)) = outcome {
        tracing::info!(
            uid = peer.uid,
            pid = peer.pid,
            ?kind,
            message,
            "closing connection"
        );
        let _ = send(
            &mut conn,
            &ServerFrame::Response(Response::Error(ErrorReply { kind, message })),
            Duration::from_secs(1),
        )
        .await;
    }
}

/// A slot for a peer with `role`, or the busy reply that says which limit it hit.
fn admit(gate: &Gate, daemon: &DaemonConfig, peer: &Peer, role: Role) -> Result<Slot, Close> {
    let limits = Limits {
        shared: daemon.max_connections,
        reserved: daemon.reserved_connections,
        per_uid: daemon.max_connections_per_uid,
    };
    gate.admission
        .admit(limits, peer.uid, role, peer.holds_every_role())
        .map_err(|full| {
            let message = full.message();
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                "connection refused: {message}"
            );
            Close::Reply(ErrorKind::Busy, message)
        })
}

/// A peer with no role may ask nothing, so it takes no slot: its hello is read (if few
/// others are waiting for theirs) so the client sees the reason instead of a broken
/// pipe, the refusal is audited, and the connection is closed.
async fn refuse_without_role(
    conn: &mut Conn,
    shared: &Shared,
    gate: &Gate,
    peer: &Peer,
    timeout: Duration,
) -> Close {
    let message = format!(
        "permission denied: uid {} holds no role in drd, and every request needs at least \
         viewer; ask an admin to add you to roles.viewer (or a higher role) in the drd config",
        peer.uid
    );
    if let Ok(_waiting) = gate.refusals.try_acquire() {
        // The hello, a timeout or a hang-up: the answer is the same.
        let _ = read_frame(conn, timeout).await;
    }
    shared
        .audit(&peer.actor(), "connect", Outcome::Refused, message.clone())
        .await;
    Close::Reply(ErrorKind::PermissionDenied, message)
}

async fn handshake(conn: &mut Conn, timeout: Duration) -> Result<Hello, Close> {
    let frame = read_frame(conn, timeout).await?;
    match codec::decode::<ClientFrame>(&frame) {
        Ok(ClientFrame::Hello(hello)) if hello.protocol == PROTOCOL_VERSION => {
            let welcome = ServerFrame::Welcome(Welcome {
                protocol: PROTOCOL_VERSION,
                daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            });
            send(conn, &welcome, timeout).await?;
            Ok(hello)
        }
        Ok(ClientFrame::Hello(hello)) => Err(Close::Reply(
            ErrorKind::VersionMismatch,
            format!(
                "{} speaks protocol {}, but this drd {} speaks protocol {PROTOCOL_VERSION}; \
                 use the drctl shipped with this drd",
                if hello.client.is_empty() {
                    "the client"
                } else {
                    &hello.client
                },
                hello.protocol,
                env!("CARGO_PKG_VERSION"),
            ),
        )),
        Ok(ClientFrame::Request(_)) => Err(Close::Reply(
            ErrorKind::BadRequest,
            "expected a handshake (Hello) first".to_owned(),
        )),
        Err(err) => Err(Close::Reply(
            ErrorKind::BadRequest,
            format!("bad handshake: {err}"),
        )),
    }
}

async fn serve_requests(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    peer: &Peer,
    idle: Duration,
) -> Result<(), Close> {
    loop {
        let frame = tokio::select! {
            // An idle connection closes when the daemon stops; a request already
            // being served below runs to its end.
            () = shared.stopping.cancelled() => return Err(Close::Gone),
            frame = read_frame(conn, idle) => frame?,
        };
        let request = match codec::decode::<ClientFrame>(&frame) {
            Ok(ClientFrame::Request(request)) => request,
            Ok(ClientFrame::Hello(_)) => {
                return Err(Close::Reply(
                    ErrorKind::BadRequest,
                    "handshake sent twice".to_owned(),
                ))
            }
            Err(err) => {
                return Err(Close::Reply(
                    ErrorKind::BadRequest,
                    format!("malformed request: {err}"),
                ))
            }
        };
        let name = request.name();
        let response = answer(conn, shared, peer, request, idle).await;
        shared.metrics.control.count(name, response.as_ref().ok());
        send(conn, &ServerFrame::Response(response?), idle).await?;
    }
}

/// Authorizes and runs one request, forwarding its events while it runs.
async fn answer(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    peer: &Peer,
    request: Request,
    idle: Duration,
) -> Result<Response, Close> {
    if shared.stopping.is_cancelled() {
        return Ok(error(
            ErrorKind::ShuttingDown,
            "drd is shutting down and takes no new requests",
        ));
    }
    let needed = request.required_role();
    let config = shared.config();
    let held = peer.role(&config.roles);
    let own_switches = switches_of(&config.config.deadman, peer.uid, &peer.groups);
    let pings_own_switch = matches!(
        &request,
        Request::Heartbeat { name, .. } if own_switches.contains(&name.as_str())
    );
    if held < Some(needed) && !pings_own_switch {
        let mut message = format!(
            "permission denied: {} needs {needed}, and uid {} holds {}; ask an admin to add \
             you to roles.{needed} in the drd config",
            request.name(),
            peer.uid,
            held.map_or("no role".to_owned(), |r| format!("only {r}")),
        );
        if !own_switches.is_empty() {
            message.push_str(&format!(
                " (as a pinger of its own, uid {} may ping only the deadman switch{} {})",
                peer.uid,
                if own_switches.len() == 1 { "" } else { "es" },
                own_switches.join(", ")
            ));
        }
        shared
            .audit(
                &peer.actor(),
                &format!("request {}", request.name()),
                Outcome::Refused,
                message.clone(),
            )
            .await;
        return Ok(error(ErrorKind::PermissionDenied, &message));
    }

    let (events, mut incoming) = mpsc::channel::<Event>(64);
    let handler = handlers::dispatch(shared.clone(), peer.clone(), request, events);
    tokio::pin!(handler);
    let mut client_gone = false;
    let response = loop {
        tokio::select! {
            response = &mut handler => break response,
            Some(event) = incoming.recv() => {
                // A client that stops reading must not stall the work it asked for.
                if !client_gone && send(conn, &ServerFrame::Event(event), idle).await.is_err() {
                    client_gone = true;
                }
            }
        }
    };
    if client_gone {
        return Err(Close::Gone);
    }
    Ok(response)
}

fn error(kind: ErrorKind, message: &str) -> Response {
    Response::Error(ErrorReply {
        kind,
        message: message.to_owned(),
    })
}

async fn read_frame(conn: &mut Conn, timeout: Duration) -> Result<bytes::BytesMut, Close> {
    match tokio::time::timeout(timeout, conn.next()).await {
        Err(_) => Err(Close::Reply(
            ErrorKind::BadRequest,
            format!(
                "no request for {}; closing idle connection",
                humantime::format_duration(timeout)
            ),
        )),
        Ok(None) => Err(Close::Gone),
        Ok(Some(Ok(frame))) => Ok(frame),
        Ok(Some(Err(err))) => Err(Close::Reply(
            ErrorKind::BadRequest,
            format!("unreadable frame: {err}"),
        )),
    }
}

async fn send(conn: &mut Conn, frame: &ServerFrame, timeout: Duration) -> Result<(), Close> {
    let bytes = match codec::encode(frame) {
        Ok(bytes) => Bytes::from(bytes),
        Err(err) => {
            tracing::error!(cause = %err, "cannot encode a reply");
            let fallback = ServerFrame::Response(Response::Error(ErrorReply {
                kind: ErrorKind::Internal,
                message: format!("the reply could not be encoded: {err}"),
            }));
            Bytes::from(codec::encode(&fallback).map_err(|_| Close::Gone)?)
        }
    };
    match tokio::time::timeout(timeout, conn.send(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Close::Gone),
    }
}
