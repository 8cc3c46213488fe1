//! `recover`: bring services back after a shutdown, streaming its phases like a
//! shutdown, or with `dry_run` the plan and the go / no-go as of now.

use drd_proto::{ErrorKind, ErrorReply, Reply};
use drd_shutdown::{self as shutdown, Finished, RecoverRequest};

use super::shutdown::follow;
use super::{Ctx, HandlerResult};

pub(super) async fn recover(ctx: &Ctx, request: RecoverRequest, dry_run: bool) -> HandlerResult {
    let firing = ctx.shared.watch.not_well().await;
    if dry_run {
        return shutdown::recovery_plan(&ctx.shared.shutdowns, request, firing)
            .await
            .map(|plan| Reply::RecoveryPlanned(Box::new(plan)))
            .map_err(|err| err.reply());
    }
    let following = shutdown::recover(&ctx.shared.shutdowns, request, ctx.peer.actor(), firing)
        .await
        .map_err(|err| err.reply())?;
    match follow(ctx, following).await? {
        Finished::Recovery(report) => Ok(Reply::Recovered(Box::new(report))),
        Finished::Shutdown { .. } => Err(ErrorReply {
            kind: ErrorKind::Internal,
            message: "a recovery ended with a shutdown's report; see drd's log".to_owned(),
        }),
    }
}

/// `--at` for `--restore-data`, as Unix milliseconds.
pub(super) fn point_in_time(at: Option<&str>) -> Result<Option<i64>, ErrorReply> {
    at.map(|text| {
        drd_proto::time::parse_point_in_time(text, std::time::SystemTime::now()).map_err(
            |message| ErrorReply {
                kind: ErrorKind::BadRequest,
                message: format!("--at: {message}"),
            },
        )
    })
    .transpose()
}
