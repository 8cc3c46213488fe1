//! `backup --job NAME`: run a job now through the job runner, streaming progress;
//! `backup emergency`: run every critical job now, in priority order.

use drd_backup::jobs::{self, RunError, Trigger};
use drd_proto::{ErrorReply, Reply};

use super::{Ctx, HandlerResult};

pub(super) async fn backup(ctx: &Ctx, job: String) -> HandlerResult {
    jobs::run_job(
        &ctx.shared.backups,
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
    jobs::emergency::run_emergency(&ctx.shared.backups, &ctx.peer.actor(), ctx.progress())
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
