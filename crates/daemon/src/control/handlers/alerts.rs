//! `alerts`: open alerts with their deliveries; `alerts ack ID` stops an alert's
//! escalation (audited with who acknowledged it); `alerts test RECEIVER` sends a
//! synthetic alert to one receiver and reports what it answered (see `drd_alerts`).

use drd_alerts::Error;
use drd_core::audit::Outcome;
use drd_proto::{ErrorKind, ErrorReply, Reply};

use super::{internal, Ctx, HandlerResult};

pub(super) async fn list(ctx: &Ctx, all: bool) -> HandlerResult {
    match ctx.shared.alerts.list(all).await {
        Ok(alerts) => Ok(Reply::Alerts(alerts)),
        Err(err) => Err(internal(&err)),
    }
}

pub(super) async fn ack(ctx: &Ctx, id: i64, comment: Option<String>) -> HandlerResult {
    let actor = ctx.peer.actor();
    match ctx
        .shared
        .alerts
        .ack(id, actor.to_string(), comment.clone())
        .await
    {
        Ok(info) => {
            let mut detail = format!("alert #{id} ({}): escalation stopped", info.source);
            if let Some(comment) = &comment {
                detail.push_str(&format!("; {comment}"));
            }
            ctx.shared
                .audit(&actor, "alert ack", Outcome::Ok, detail)
                .await;
            Ok(Reply::AlertAcked(Box::new(info)))
        }
        Err(err) => Err(refused(ctx, "alert ack", err).await),
    }
}

pub(super) async fn test(ctx: &Ctx, receiver: String) -> HandlerResult {
    let actor = ctx.peer.actor();
    match ctx.shared.alerts.test(&receiver).await {
        Ok(report) => {
            let (outcome, verdict) = if report.ok {
                (Outcome::Ok, "reached")
            } else {
                (Outcome::Failed, "not reached")
            };
            let detail = format!(
                "{receiver} ({} {}) {verdict}: firing {}; resolved {}",
                report.kind, report.target, report.firing, report.resolved
            );
            ctx.shared
                .audit(&actor, "alert test", outcome, detail)
                .await;
            Ok(Reply::AlertTested(report))
        }
        Err(err) => Err(refused(ctx, "alert test", err).await),
    }
}

/// An alerts error as a reply; what the caller got wrong is audited as refused.
async fn refused(ctx: &Ctx, action: &str, err: Error) -> ErrorReply {
    let kind = match &err {
        Error::Catalog(_) => return internal(&err),
        Error::NotFound(_) | Error::UnknownReceiver(_) => ErrorKind::NotFound,
        Error::NotOpen { .. } => ErrorKind::Failed,
    };
    let message = err.to_string();
    ctx.shared
        .audit(&ctx.peer.actor(), action, Outcome::Refused, message.clone())
        .await;
    ErrorReply { kind, message }
}
