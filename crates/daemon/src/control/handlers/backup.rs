//! `backup --job NAME`: run a job now, streaming progress, and record the snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};

use drd_proto::{ErrorKind, ErrorReply, ProgressUnit, Reply};

use super::{backup_error, blocking, progress_sender, Ctx, HandlerResult};
use crate::audit::Outcome;
use crate::backup::{self, cache, report};

/// Keeps a job marked as running until dropped.
struct Running<'a> {
    ctx: &'a Ctx,
    job: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.ctx
            .shared
            .running_jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.job);
    }
}

pub(super) async fn backup(ctx: &Ctx, job: String) -> HandlerResult {
    let config = ctx.shared.config();
    let target = backup::job_target(&config, &job).map_err(|e| backup_error(&e))?;
    let (tier, tier_path) = (target.tier_name.to_owned(), target.tier.path.clone());

    let newly = ctx
        .shared
        .running_jobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(job.clone());
    if !newly {
        return Err(ErrorReply {
            kind: ErrorKind::Busy,
            message: format!("job {job} is already running; wait for it to finish"),
        });
    }
    let _running = Running {
        ctx,
        job: job.clone(),
    };

    let send = progress_sender(ctx.event_sender());
    let task = format!("backup {job}");
    let scratch = backup::scratch_dir(&ctx.shared.state_dir);
    let keys =
        drd_repo::KeySet::load(&config.config.keys.files).map_err(|e| backup_error(&e.into()))?;
    // A daemon that is stopping cancels the backup; what was written stays valid
    // (packs without an index are reclaimed later) and no snapshot is recorded.
    let cancel = Arc::new(AtomicBool::new(false));
    let stopping = ctx.shared.stopping.clone();
    let flag = cancel.clone();
    let watcher = tokio::spawn(async move {
        stopping.cancelled().await;
        flag.store(true, Ordering::SeqCst);
    });
    let defaults = drd_repo::BackupOptions::default();
    let daemon = &config.config.daemon;
    let options = drd_repo::BackupOptions {
        cancel: Some(cancel),
        threads: match daemon.backup_threads {
            0 => defaults.threads,
            n => n,
        },
        max_in_flight_bytes: daemon.backup_buffer_mib << 20,
        compression_level: daemon.compression_level,
        ..defaults
    };
    let run_job = job.clone();
    let run_config = config.clone();
    let result = blocking(move || {
        let target = backup::job_target(&run_config, &run_job).map_err(|e| backup_error(&e))?;
        backup::run_backup(&target, &keys, &scratch, &options, &mut |p| {
            send(
                &task,
                p.bytes_done,
                p.bytes_expected,
                ProgressUnit::Bytes,
                format!("{} files; {}", p.files_done, p.current_path),
            );
        })
        .map_err(|e| backup_error(&e))
    })
    .await;
    watcher.abort();

    let actor = ctx.peer.actor();
    let summary = match result {
        Ok(summary) => summary,
        Err(reply) => {
            tracing::error!(job, cause = %reply.message, "backup failed");
            ctx.shared
                .audit(
                    &actor,
                    &format!("backup {job}"),
                    Outcome::Failed,
                    reply.message.clone(),
                )
                .await;
            return Err(reply);
        }
    };
    let report = report::backup_report(&summary, &tier);
    let info = report.snapshot.clone();
    if let Err(err) = ctx
        .shared
        .catalog
        .call("cache snapshot", move |conn| cache::insert(conn, &info))
        .await
    {
        // The snapshot is safe in the repository; the cache rebuilds on the next list.
        tracing::warn!(cause = %err, "cannot cache the new snapshot");
    }
    ctx.shared
        .audit(
            &actor,
            &format!("backup {job}"),
            Outcome::Ok,
            format!(
                "snapshot {} in {} ({}): {} new, {} changed, {} unchanged files; {} bytes read, {} added",
                report.snapshot.id,
                tier,
                tier_path.display(),
                report.files_new,
                report.files_changed,
                report.files_unchanged,
                report.bytes_read,
                report.bytes_added
            ),
        )
        .await;
    Ok(Reply::BackedUp(report))
}
