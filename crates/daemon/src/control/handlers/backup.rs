//! `backup --job NAME`: run a job now through the job runner, streaming progress;
//! `backup emergency`: run every critical job now, in priority order.

use drd_proto::{ErrorReply, Reply};

use super::{Ctx, HandlerResult};
use crate::jobs::{self, RunError, Trigger};

pub(super) async fn backup(ctx: &Ctx, job: String) -> HandlerResult {
    jobs::run_job(
        &ctx.shared,
        &job,
        Trigger::Manual,
        &ctx.peer.actor(),
        ctx.progress(),
    )
    .await
    .map(Reply::BackedUp)
    .map_err(|err| run_error(&err))
}

pub(super) async fn emergency(ctx: &Ctx) -> HandlerResult {
    jobs::emergency::run_emergency(&ctx.shared, &ctx.peer.actor(), ctx.progress())
        .await
        .map(Reply::EmergencyBackedUp)
        .map_err(|err| run_error(&err))
}

/// A run's failure as a reply.
pub(super) fn run_error(err: &RunError) -> ErrorReply {
    ErrorReply {
        kind: err.kind(),
        message: err.to_string(),
    }
}
