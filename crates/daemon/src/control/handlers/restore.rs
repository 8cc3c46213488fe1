//! `restore`: a snapshot, or part of it, into a target folder, with progress.

use std::path::PathBuf;

use drd_proto::{ErrorKind, ErrorReply, ProgressUnit, Reply, SnapshotSelector};
use drd_repo::RestoreOptions;

use super::{backup_error, blocking, progress_sender, Ctx, HandlerResult};
use crate::audit::Outcome;
use crate::backup::{self, report, BackupError};

/// The restore request's fields.
pub(super) struct RestoreRequest {
    pub selector: SnapshotSelector,
    pub job: Option<String>,
    pub tier: Option<String>,
    pub paths: Vec<String>,
    pub target: String,
    pub overwrite: bool,
    pub allow_older: bool,
}

pub(super) async fn restore(ctx: &Ctx, request: RestoreRequest) -> HandlerResult {
    let target = PathBuf::from(&request.target);
    if !target.is_absolute() {
        return Err(ErrorReply {
            kind: ErrorKind::BadRequest,
            message: format!(
                "restore target {} must be an absolute path",
                target.display()
            ),
        });
    }
    let config = ctx.shared.config();
    let tiers = backup::tiers_for(&config, request.job.as_deref(), request.tier.as_deref())
        .map_err(|e| backup_error(&e))?;
    let tier = match tiers.as_slice() {
        [(name, _)] => name.clone(),
        [] => {
            return Err(backup_error(&BackupError::NotFound(
                "no job writes to any tier, so there is nothing to restore from".to_owned(),
            )))
        }
        _ => {
            return Err(ErrorReply {
                kind: ErrorKind::BadRequest,
                message: "jobs write to more than one repository; name the job with --job"
                    .to_owned(),
            })
        }
    };
    let keys =
        drd_repo::KeySet::load(&config.config.keys.files).map_err(|e| backup_error(&e.into()))?;
    let send = progress_sender(ctx.event_sender());
    let what = describe(&request);
    let job = request.job.clone();
    let (paths, overwrite, selector) = (request.paths, request.overwrite, request.selector);
    let allow_older = request.allow_older;
    let restore_target = target.clone();
    let config = config.clone();
    // What the catalog read from the tier's snapshot files while they were intact. It
    // only narrows which damaged files are in the way; without it, all are.
    let known = {
        let tier = tier.clone();
        ctx.shared
            .catalog
            .call("read snapshot cache", move |c| {
                crate::backup::cache::known(c, &tier)
            })
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(cause = %err, "cannot read the snapshot cache");
                Default::default()
            })
    };
    let result = blocking(move || {
        let run = || -> Result<_, BackupError> {
            // A landing tier reads a blob it lacks (or holds damaged) from its copies.
            let repo = crate::tiers::open_for_read(&config, &tier, &keys)?;
            let selected = backup::select(&repo, &selector, job.as_deref(), allow_older, &known)?;
            for warning in &selected.warnings {
                tracing::warn!(tier, "{warning}");
            }
            let snapshot = selected.snapshot;
            let options = RestoreOptions {
                paths: paths.iter().map(PathBuf::from).collect(),
                target: restore_target.clone(),
                overwrite,
                threads: match config.config.daemon.restore_threads {
                    0 => RestoreOptions::default_threads(),
                    n => n,
                },
            };
            let task = format!("restore {}", snapshot.short_id());
            let summary = repo.restore(&snapshot, &options, &mut |p| {
                send(
                    &task,
                    p.bytes_done,
                    Some(p.bytes_total),
                    ProgressUnit::Bytes,
                    format!("{}/{} files", p.files_done, p.files_total),
                );
            })?;
            let mut report = report::restore_report(&summary, &snapshot, &tier, &restore_target);
            // What the choice of snapshot passed over comes first.
            report.warnings.splice(0..0, selected.warnings);
            Ok(report)
        };
        run().map_err(|e| backup_error(&e))
    })
    .await;
    let actor = ctx.peer.actor();
    match result {
        Ok(report) => {
            let detail = format!(
                "snapshot {} ({}) to {}: {} files, {} bytes",
                report.snapshot.id,
                what,
                target.display(),
                report.files,
                report.bytes
            );
            ctx.shared
                .audit(&actor, "restore", Outcome::Ok, detail)
                .await;
            Ok(Reply::Restored(report))
        }
        Err(reply) => {
            let detail = format!("{what} to {}: {}", target.display(), reply.message);
            ctx.shared
                .audit(&actor, "restore", Outcome::Failed, detail)
                .await;
            Err(reply)
        }
    }
}

fn describe(request: &RestoreRequest) -> String {
    let which = match &request.selector {
        SnapshotSelector::Latest => "latest".to_owned(),
        SnapshotSelector::Id(id) => id.clone(),
        SnapshotSelector::At(at) => format!("at {}", crate::util::rfc3339(*at)),
    };
    let job = request
        .job
        .as_deref()
        .map(|j| format!(" of {j}"))
        .unwrap_or_default();
    let paths = if request.paths.is_empty() {
        String::new()
    } else {
        format!(", paths {}", request.paths.join(" "))
    };
    format!("{which}{job}{paths}")
}
