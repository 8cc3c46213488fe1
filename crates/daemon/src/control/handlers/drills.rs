//! `test run`, `test list`, `test report`: recovery drills now with progress, the
//! scenarios, and what the drills measured over a period (see `drd_drills`). The run
//! itself is audited by the drills; a refusal here is audited as a refusal.

use drd_core::audit::Outcome;
use drd_drills::{Error, Filter};
use drd_proto::{Category, DrillTrigger, ErrorKind, ErrorReply, Reply, Scenario};

use super::{internal, Ctx, HandlerResult};

pub(super) async fn run(
    ctx: &Ctx,
    category: Option<Category>,
    scenario: Option<Scenario>,
) -> HandlerResult {
    let filter = Filter {
        category,
        scenario,
        enabled_only: false,
    };
    let progress = ctx.progress();
    // Boxed: a drill run's future is large, and every request's future would
    // otherwise be as large as the largest handler's.
    match Box::pin(
        ctx.shared
            .drills
            .run(DrillTrigger::Manual, filter, progress),
    )
    .await
    {
        Ok(report) => Ok(Reply::DrillRan(Box::new(report))),
        Err(err) => {
            let kind = match &err {
                Error::Busy { .. } | Error::HostBusy(_) => ErrorKind::Busy,
                Error::NothingToRun(_) => ErrorKind::NotFound,
                Error::Catalog(_) => return Err(internal(&err)),
            };
            ctx.shared
                .audit(
                    &ctx.peer.actor(),
                    "drill run",
                    Outcome::Refused,
                    err.to_string(),
                )
                .await;
            Err(ErrorReply {
                kind,
                message: err.to_string(),
            })
        }
    }
}

pub(super) async fn list(ctx: &Ctx) -> HandlerResult {
    Ok(Reply::DrillScenarios(ctx.shared.drills.list()))
}

pub(super) async fn report(ctx: &Ctx, since_unix_ms: i64) -> HandlerResult {
    match ctx.shared.drills.report(since_unix_ms).await {
        Ok(report) => Ok(Reply::DrillReport(Box::new(report))),
        Err(err) => Err(internal(&err)),
    }
}

pub(super) async fn validate(ctx: &Ctx) -> HandlerResult {
    // The deadman switches belong to the watching layer, which the drills do not hold.
    let switches = ctx.shared.watch.switches().await;
    Ok(Reply::Validated(
        Box::pin(drd_drills::validate::validate(
            &ctx.shared.drills,
            &switches,
        ))
        .await,
    ))
}
