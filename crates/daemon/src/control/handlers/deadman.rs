//! `deadman`: every deadman switch with its state, newest ping, next deadline and run
//! in progress; `deadman pause|resume NAME` (see `drd_watch::switches`).

use drd_proto::Reply;

use super::heartbeat::switch_error;
use super::{Ctx, HandlerResult};

pub(super) async fn list(ctx: &Ctx) -> HandlerResult {
    Ok(Reply::Switches(ctx.shared.watch.switches().await))
}

pub(super) async fn pause(ctx: &Ctx, name: String, pause: bool) -> HandlerResult {
    let action = if pause {
        "deadman pause"
    } else {
        "deadman resume"
    };
    match ctx
        .shared
        .watch
        .pause_switch(&name, pause, &ctx.peer.actor())
        .await
    {
        Ok(info) => Ok(Reply::SwitchPaused(info)),
        Err(err) => Err(switch_error(ctx, action, err).await),
    }
}
