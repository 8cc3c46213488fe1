//! One handler per request; `dispatch` is the only place that matches on requests.

mod abort;
mod alerts;
mod audit;
mod backup;
mod backups;
mod deadman;
mod drills;
mod heartbeat;
mod jobs;
mod monitors;
mod prune;
mod recover;
mod reload;
mod repair;
mod restore;
mod shutdown;
mod shutdowns;
mod status;
mod verify;

use std::sync::Arc;

use drd_proto::{ErrorKind, ErrorReply, Event, Request, Response};
use tokio::sync::mpsc;

use super::auth::Peer;
use crate::state::Shared;

/// What a handler gets: the daemon state, who asked, and a way to stream events.
pub struct Ctx {
    /// Shared daemon state.
    pub shared: Arc<Shared>,
    /// The caller.
    pub peer: Peer,
    events: mpsc::Sender<Event>,
}

impl Ctx {
    /// The raw event channel, for forwarding events another task produced as they are
    /// (a shutdown run's). A handler's own progress goes through [`Ctx::progress`].
    pub fn event_sender(&self) -> mpsc::Sender<Event> {
        self.events.clone()
    }

    /// Where a handler's work reports progress, from async or blocking code: each
    /// report goes to the client as an event, and is dropped when the client is slow.
    /// The one way progress reaches a client.
    pub fn progress(&self) -> drd_backup::jobs::RunProgress {
        let events = self.events.clone();
        Arc::new(move |progress| {
            let _ = events.try_send(Event::Progress(progress));
        })
    }
}

/// Runs `request` (already authorized) and returns its response.
pub async fn dispatch(
    shared: Arc<Shared>,
    peer: Peer,
    request: Request,
    events: mpsc::Sender<Event>,
) -> Response {
    let ctx = Ctx {
        shared,
        peer,
        events,
    };
    let result = match request {
        Request::Status { audit_tail } => status::status(&ctx, audit_tail).await,
        Request::AuditList {
            since_unix_ms,
            limit,
        } => audit::list(&ctx, since_unix_ms, limit).await,
        Request::AuditVerify => audit::verify(&ctx).await,
        Request::Reload => reload::reload(&ctx).await,
        Request::Backup { job } => backup::backup(&ctx, job).await,
        Request::Backups { job, tier } => backups::backups(&ctx, job, tier).await,
        Request::Restore {
            selector,
            job,
            tier,
            paths,
            target,
            overwrite,
            allow_older,
        } => {
            let request = restore::RestoreRequest {
                selector,
                job,
                tier,
                paths,
                target,
                overwrite,
                allow_older,
            };
            restore::restore(&ctx, request).await
        }
        Request::Verify {
            job,
            tier,
            read_data,
            subset_percent,
        } => verify::verify(&ctx, job, tier, read_data, subset_percent).await,
        Request::Shutdown {
            trigger,
            force,
            dry_run,
            only,
            reason,
            resume,
        } => {
            let request = drd_shutdown::StartRequest {
                trigger,
                force,
                only,
                reason,
                resume,
            };
            shutdown::shutdown(&ctx, request, dry_run).await
        }
        Request::Abort { rollback } => abort::abort(&ctx, rollback).await,
        Request::Jobs => jobs::jobs(&ctx).await,
        Request::Prune { job, dry_run } => prune::prune(&ctx, job, dry_run).await,
        Request::EmergencyBackup => backup::emergency(&ctx).await,
        Request::RepairIndex { job, tier } => repair::repair_index(&ctx, job, tier).await,
        Request::Monitors => monitors::monitors(&ctx).await,
        Request::Heartbeat {
            name,
            kind,
            exit_code,
            run_id,
        } => heartbeat::heartbeat(&ctx, name, kind, exit_code, run_id).await,
        Request::Deadman => deadman::list(&ctx).await,
        Request::DeadmanPause { name, pause } => deadman::pause(&ctx, name, pause).await,
        Request::Recover {
            dry_run,
            only,
            from_shutdown,
            resume,
            restore_data,
            at,
        } => match recover::point_in_time(at.as_deref()) {
            Ok(at_unix_ms) => {
                let request = drd_shutdown::RecoverRequest {
                    only,
                    from_shutdown,
                    resume,
                    restore_data,
                    at_unix_ms,
                };
                recover::recover(&ctx, request, dry_run).await
            }
            Err(err) => Err(err),
        },
        Request::Shutdowns { limit } => shutdowns::shutdowns(&ctx, limit).await,
        Request::Alerts { all } => alerts::list(&ctx, all).await,
        Request::AlertAck { id, comment } => alerts::ack(&ctx, id, comment).await,
        Request::AlertTest { receiver } => alerts::test(&ctx, receiver).await,
        Request::DrillRun { category, scenario } => drills::run(&ctx, category, scenario).await,
        Request::DrillList => drills::list(&ctx).await,
        Request::DrillReport { since_unix_ms } => drills::report(&ctx, since_unix_ms).await,
        Request::Validate => drills::validate(&ctx).await,
    };
    match result {
        Ok(reply) => Response::Ok(reply),
        Err(reply) => Response::Error(reply),
    }
}

/// What handlers return.
type HandlerResult = Result<drd_proto::Reply, ErrorReply>;

/// A backup-side failure as a reply: not-found kinds become `NotFound`, the rest
/// `Failed`.
fn backup_error(err: &drd_backup::backup::BackupError) -> ErrorReply {
    ErrorReply {
        kind: if err.is_not_found() {
            ErrorKind::NotFound
        } else {
            ErrorKind::Failed
        },
        message: err.to_string(),
    }
}

/// A tier's failure as a reply: not-found kinds become `NotFound`, a request that
/// fits several tiers `BadRequest`, a catalog failure `Internal`, the rest `Failed`.
fn tier_error(err: &drd_backup::tiers::TierError) -> ErrorReply {
    use drd_backup::tiers::TierError;
    let kind = match err {
        TierError::Catalog(_) => return internal(err),
        TierError::Ambiguous(_) => ErrorKind::BadRequest,
        _ if err.is_not_found() => ErrorKind::NotFound,
        _ => ErrorKind::Failed,
    };
    ErrorReply {
        kind,
        message: err.to_string(),
    }
}

/// Runs blocking repository work on the blocking pool; a panic there becomes an
/// internal error instead of taking the connection down.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ErrorReply> + Send + 'static,
) -> Result<T, ErrorReply> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| Err(internal(&join)))
}

/// An internal failure as a reply, logged on the way.
fn internal(err: &dyn std::fmt::Display) -> ErrorReply {
    tracing::error!(cause = %err, "request failed");
    ErrorReply {
        kind: ErrorKind::Internal,
        message: err.to_string(),
    }
}
