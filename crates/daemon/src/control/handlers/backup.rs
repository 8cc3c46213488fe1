//! `backup --job NAME`: run a job now through the job runner, streaming progress;
//! `backup emergency`: run every critical job now, in priority order.

use std::sync::Arc;

use drd_proto::{ErrorReply, Event, Reply};

use super::{Ctx, HandlerResult};
use crate::jobs::{self, RunError, RunProgress, Trigger};

pub(super) async fn backup(ctx: &Ctx, job: String) -> HandlerResult {
    jobs::run_job(
        &ctx.shared,
        &job,
        Trigger::Manual,
        &ctx.peer.actor(),
        progress_events(ctx),
    )
    .await
    .map(Reply::BackedUp)
    .map_err(|err| run_error(&err))
}

pub(super) async fn emergency(ctx: &Ctx) -> HandlerResult {
    jobs::emergency::run_emergency(&ctx.shared, &ctx.peer.actor(), progress_events(ctx))
        .await
        .map(Reply::EmergencyBackedUp)
        .map_err(|err| run_error(&err))
}

/// A run's progress as events to the client; dropped when the client is slow.
pub(super) fn progress_events(ctx: &Ctx) -> RunProgress {
    let events = ctx.event_sender();
    Arc::new(move |progress| {
        let _ = events.try_send(Event::Progress(progress));
    })
}

/// A run's failure as a reply.
pub(super) fn run_error(err: &RunError) -> ErrorReply {
    ErrorReply {
        kind: err.kind(),
        message: err.to_string(),
    }
}
