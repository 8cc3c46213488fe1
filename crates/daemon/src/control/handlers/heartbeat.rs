//! `heartbeat`: a ping for a deadman switch, from `drctl heartbeat NAME` or an
//! application on the socket (see `drd_watch::switches`). Who may ping which switch is
//! decided before this runs (`conn`): operators any, a switch's own `users` and
//! `groups` only it.

use drd_core::audit::Outcome;
use drd_proto::{ErrorKind, ErrorReply, PingKind, Reply};
use drd_watch::switches::SwitchError;

use super::{internal, Ctx, HandlerResult};

pub(super) async fn heartbeat(
    ctx: &Ctx,
    name: String,
    kind: PingKind,
    exit_code: Option<i32>,
    run_id: Option<String>,
) -> HandlerResult {
    let actor = ctx.peer.actor();
    match ctx
        .shared
        .watch
        .heartbeat(&name, kind, exit_code, run_id.as_deref(), &actor)
        .await
    {
        Ok(info) => Ok(Reply::Pinged(info)),
        Err(err) => Err(switch_error(ctx, "heartbeat", err).await),
    }
}

/// A switch request's failure as a reply: an unknown switch is `NotFound` (its
/// message lists the known names), audited as refused like every refusal.
pub(super) async fn switch_error(ctx: &Ctx, action: &str, err: SwitchError) -> ErrorReply {
    match err {
        SwitchError::NotFound(message) => {
            ctx.shared
                .audit(&ctx.peer.actor(), action, Outcome::Refused, message.clone())
                .await;
            ErrorReply {
                kind: ErrorKind::NotFound,
                message,
            }
        }
        SwitchError::Catalog(_) => internal(&err),
    }
}
