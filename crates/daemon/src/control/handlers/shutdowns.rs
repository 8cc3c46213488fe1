//! `shutdowns`: past shutdowns and recoveries, newest first, each `running`,
//! `interrupted` (its drd died mid-run) or how it ended.

use drd_proto::Reply;

use super::{internal, Ctx, HandlerResult};

pub(super) async fn shutdowns(ctx: &Ctx, limit: u32) -> HandlerResult {
    // Read before the history: see `mark_interrupted`.
    let newest = drd_shutdown::status(&ctx.shared.shutdowns).await;
    let mut runs = drd_shutdown::history::history(&ctx.shared.catalog, limit)
        .await
        .map_err(|e| internal(&e))?;
    drd_shutdown::history::mark_interrupted(&mut runs, newest.as_ref());
    Ok(Reply::Shutdowns(runs))
}
