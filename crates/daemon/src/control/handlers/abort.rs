//! `abort`: stop the running (or interrupted) shutdown at its next safe point and,
//! unless told not to, roll back; streams the rollback and answers with its report.

use drd_proto::{ErrorKind, ErrorReply, Reply};

use super::shutdown::follow;
use super::{Ctx, HandlerResult};

pub(super) async fn abort(ctx: &Ctx, rollback: bool) -> HandlerResult {
    let following = drd_shutdown::abort(&ctx.shared.shutdowns, rollback, ctx.peer.actor())
        .await
        .map_err(|err| err.reply())?;
    let run_id = following.run_id;
    let finished = follow(ctx, following).await?;
    // A run that ended on its own just before the abort arrived has nothing to undo.
    finished.abort.map(|a| Reply::Aborted(Box::new(a))).ok_or_else(|| ErrorReply {
        kind: ErrorKind::Failed,
        message: format!(
            "shutdown #{run_id} finished ({}) before the abort took effect; nothing was rolled back",
            finished.report.outcome.as_str()
        ),
    })
}
