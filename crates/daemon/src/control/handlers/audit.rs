//! `audit` and `audit verify`.

use drd_proto::{Progress, ProgressUnit, Reply};

use super::{internal, Ctx, HandlerResult};

pub(super) async fn list(ctx: &Ctx, since_unix_ms: Option<i64>, limit: u32) -> HandlerResult {
    ctx.shared
        .audit
        .list(since_unix_ms, limit)
        .await
        .map(Reply::AuditEntries)
        .map_err(|e| internal(&e))
}

pub(super) async fn verify(ctx: &Ctx) -> HandlerResult {
    let progress = ctx.progress();
    ctx.shared
        .audit
        .verify(move |done, total| {
            progress(Progress {
                task: "verifying audit chain".to_owned(),
                done,
                total: Some(total),
                unit: ProgressUnit::Items,
                detail: String::new(),
            });
        })
        .await
        .map(Reply::AuditVerified)
        .map_err(|e| internal(&e))
}
