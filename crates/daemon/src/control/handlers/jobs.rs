//! `jobs`: every configured job with its schedule, last success and failure, next run,
//! RPO now against its target, and how far each offsite copy lags (see
//! `jobs::overview`).

use std::collections::HashSet;
use std::sync::PoisonError;

use drd_backup::jobs::overview;
use drd_proto::Reply;

use super::{internal, Ctx, HandlerResult};

pub(super) async fn jobs(ctx: &Ctx) -> HandlerResult {
    let config = ctx.shared.config();
    let running: HashSet<String> = ctx
        .shared
        .backups
        .running_jobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    overview::overview(&ctx.shared.catalog, &config, &running)
        .await
        .map(Reply::Jobs)
        .map_err(|e| internal(&e))
}
