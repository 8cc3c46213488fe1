//! `monitors`: every monitor check with its state, value, thresholds, the evidence of
//! its last decision and the actions it took (see `drd_watch::checks`).

use drd_proto::Reply;

use super::{Ctx, HandlerResult};

pub(super) async fn monitors(ctx: &Ctx) -> HandlerResult {
    Ok(Reply::Monitors(ctx.shared.watch.monitor_checks()))
}
