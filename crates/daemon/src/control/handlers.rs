//! One handler per request; `dispatch` is the only place that matches on requests.

mod audit;
mod reload;
mod status;

use std::sync::Arc;

use drd_proto::{ErrorKind, ErrorReply, Event, Request, Response};
use tokio::sync::mpsc;

use super::auth::Peer;
use crate::state::Shared;

/// What a handler gets: the daemon state, who asked, and a way to stream events.
pub struct Ctx {
    /// Shared daemon state.
    pub shared: Arc<Shared>,
    /// The caller.
    pub peer: Peer,
    events: mpsc::Sender<Event>,
}

impl Ctx {
    /// A sender for events from blocking code.
    pub fn event_sender(&self) -> mpsc::Sender<Event> {
        self.events.clone()
    }
}

/// Runs `request` (already authorized) and returns its response.
pub async fn dispatch(
    shared: Arc<Shared>,
    peer: Peer,
    request: Request,
    events: mpsc::Sender<Event>,
) -> Response {
    let ctx = Ctx {
        shared,
        peer,
        events,
    };
    let result = match request {
        Request::Status { audit_tail } => status::status(&ctx, audit_tail).await,
        Request::AuditList {
            since_unix_ms,
            limit,
        } => audit::list(&ctx, since_unix_ms, limit).await,
        Request::AuditVerify => audit::verify(&ctx).await,
        Request::Reload => reload::reload(&ctx).await,
    };
    match result {
        Ok(reply) => Response::Ok(reply),
        Err(reply) => Response::Error(reply),
    }
}

/// What handlers return.
type HandlerResult = Result<drd_proto::Reply, ErrorReply>;

/// An internal failure as a reply, logged on the way.
fn internal(err: &dyn std::fmt::Display) -> ErrorReply {
    tracing::error!(cause = %err, "request failed");
    ErrorReply {
        kind: ErrorKind::Internal,
        message: err.to_string(),
    }
}
