//! `abort`: stop the running (or interrupted) shutdown at its next safe point and,
//! unless told not to, roll back; streams the rollback and answers with its report.

use drd_proto::{ErrorKind, ErrorReply, Reply};

use drd_shutdown::Finished;

use super::shutdown::follow;
use super::{Ctx, HandlerResult};

pub(super) async fn abort(ctx: &Ctx, rollback: bool) -> HandlerResult {
    let following = drd_shutdown::abort(&ctx.shared.shutdowns, rollback, ctx.peer.actor())
        .await
        .map_err(|err| err.reply())?;
    let run_id = following.run_id;
    match follow(ctx, following).await? {
        Finished::Shutdown {
            abort: Some(abort), ..
        } => Ok(Reply::Aborted(Box::new(abort))),
        Finished::Shutdown {
            report,
            abort: None,
        } => Err(ErrorReply {
            kind: ErrorKind::Failed,
            message: format!(
                "shutdown #{run_id} finished ({}) before the abort took effect; nothing was rolled back",
                report.outcome.as_str()
            ),
        }),
        Finished::Recovery(report) => Ok(Reply::Recovered(Box::new(report))),
    }
}
