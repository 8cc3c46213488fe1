//! `shutdown`: print the plan (dry run), or start an emergency shutdown and stream
//! it to the caller until it ends.

use drd_proto::{ErrorKind, ErrorReply, Reply};
use tokio::sync::broadcast::error::RecvError;

use super::{internal, Ctx, HandlerResult};
use drd_shutdown::{self as shutdown, Following, StartRequest};

pub(super) async fn shutdown(ctx: &Ctx, request: StartRequest, dry_run: bool) -> HandlerResult {
    if dry_run {
        let config = ctx.shared.config();
        return shutdown::dry_run(&config.config, &request.only, request.force)
            .await
            .map(|plan| Reply::ShutdownPlanned(Box::new(plan)))
            .map_err(|err| shutdown::StartError::from(err).reply());
    }
    let following = shutdown::start(&ctx.shared.shutdowns, request, ctx.peer.actor())
        .await
        .map_err(|err| err.reply())?;
    match follow(ctx, following).await? {
        shutdown::Finished::Shutdown { report, .. } => {
            Ok(Reply::ShutdownFinished(Box::new(report)))
        }
        shutdown::Finished::Recovery(_) => Err(internal(
            &"a shutdown ended with a recovery's report; see drd's log",
        )),
    }
}

/// Forwards a run's events to the caller until it ends. The run goes on if the
/// caller goes away; it does not belong to the connection.
pub(super) async fn follow(
    ctx: &Ctx,
    mut following: Following,
) -> Result<shutdown::Finished, ErrorReply> {
    let events = ctx.event_sender();
    let ended = following.ended();
    let forward = async {
        loop {
            match following.events.recv().await {
                Ok(event) => {
                    let _ = events.send(event).await;
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    };
    let (run_id, kind) = (following.run_id, following.kind);
    tokio::select! {
        () = forward => {}
        () = ended => {}
    }
    // Events sent just before the end are still queued.
    while let Ok(event) = following.events.try_recv() {
        let _ = events.send(event).await;
    }
    match following.finished().await {
        Some(finished) => Ok(finished),
        // The coordinator left the run at a safe point because drd is stopping.
        None if ctx.shared.stopping.is_cancelled() => Err(ErrorReply {
            kind: ErrorKind::ShuttingDown,
            message: format!(
                "drd is stopping: {kind} #{run_id} stopped after its current step and is \
                 interrupted; once drd is back, {}",
                shutdown::next_step(kind)
            ),
        }),
        None => Err(internal(&format!(
            "{kind} #{run_id} ended without a report; see drd's log"
        ))),
    }
}
