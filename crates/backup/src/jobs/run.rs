//! One run of one job, the same whoever started it: claim the job (one run at a time),
//! `before` hooks, the backup, the snapshot into the cache, the run into the catalog,
//! `after` hooks, retention on the landing tier, and the audit entry.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use drd_core::audit::{Actor, Outcome as AuditOutcome};
use drd_core::config::LoadedConfig;
use drd_core::http::Signal;
use drd_proto::{BackupReport, ErrorKind, Progress, ProgressUnit};

use super::runs::{self, Finish, Outcome};
use super::{hooks, now_ms, retention, Trigger};
use crate::backup::{self, report, BackupError};
use crate::tiers::snapshot_cache;
use crate::Backups;

/// Where a run reports how far it has come: backup progress (task `backup JOB`) and
/// the hook and retention phases (task `JOB: PHASE`). Handlers report their other
/// long work (restore, verify, the audit check) through the same shape; see
/// `control::handlers::Ctx::progress`.
pub type RunProgress = Arc<dyn Fn(Progress) + Send + Sync>;

/// Why a run did not produce a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config has no such job (or its tier is missing).
    #[error("{0}")]
    NotFound(String),
    /// The job is running already; runs of one job never overlap.
    #[error("job {job} is already running; wait for it to finish")]
    Busy {
        /// The job.
        job: String,
    },
    /// A `before` hook failed, so the backup was not started.
    #[error("job {job} was skipped: {message}")]
    Skipped {
        /// The job.
        job: String,
        /// Which hook failed and how.
        message: String,
    },
    /// The daemon began to stop during the backup; nothing was recorded.
    #[error(
        "the backup of job {job} was cancelled because drd is stopping; no snapshot was written"
    )]
    Cancelled {
        /// The job.
        job: String,
    },
    /// The backup itself failed.
    #[error(transparent)]
    Backup(BackupError),
}

impl RunError {
    /// The error kind a request reports for this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunError::NotFound(_) => ErrorKind::NotFound,
            RunError::Busy { .. } => ErrorKind::Busy,
            RunError::Skipped { .. } | RunError::Cancelled { .. } => ErrorKind::Failed,
            RunError::Backup(err) if err.is_not_found() => ErrorKind::NotFound,
            RunError::Backup(BackupError::LockWait { .. }) => ErrorKind::Busy,
            RunError::Backup(_) => ErrorKind::Failed,
        }
    }
}

/// Keeps a job marked as running until dropped.
struct Claim<'a> {
    running: &'a Mutex<HashSet<String>>,
    job: String,
}

impl<'a> Claim<'a> {
    fn take(running: &'a Mutex<HashSet<String>>, job: &str) -> Result<Claim<'a>, RunError> {
        let newly = running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job.to_owned());
        if !newly {
            return Err(RunError::Busy {
                job: job.to_owned(),
            });
        }
        Ok(Claim {
            running,
            job: job.to_owned(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.job);
    }
}

/// Runs `job` once and returns the snapshot it wrote. `trigger` and `actor` go into
/// the run record and the audit entry; `progress` sees the run as it goes.
pub async fn run_job(
    backups: &Backups,
    job: &str,
    trigger: Trigger,
    actor: &Actor,
    progress: RunProgress,
) -> Result<BackupReport, RunError> {
    // The run's one config snapshot: the hooks, the sources and retention all come
    // from it, whatever a reload does meanwhile.
    let config = backups.core.config();
    let target = backup::job_target(&config, job).map_err(|err| match err {
        BackupError::NotFound(message) => RunError::NotFound(message),
        other => RunError::Backup(other),
    })?;
    let job_config = target.job.clone();
    let tier = target.tier_name.to_owned();
    let tier_location = target.tier.location();
    let _claim = Claim::take(&backups.running_jobs, job)?;
    backups.note_started(job);

    let started = now_ms();
    let run_id = record(backups, "record run start", {
        let (job, trigger) = (job.to_owned(), trigger.as_str());
        move |c| runs::start(c, &job, trigger, started)
    })
    .await;
    let action = format!("backup {job}");
    let core = &backups.core;
    let pings = core
        .pinger
        .run(&core.workers, job_config.ping_url.as_deref());
    pings.ping(Signal::Start, String::new());
    let mut env = vec![
        ("DRD_JOB", job.to_owned()),
        ("DRD_TRIGGER", trigger.as_str().to_owned()),
    ];

    if !job_config.before.is_empty() {
        phase(&progress, job, "before hooks", job_config.before.len());
        if let Err(message) = hooks::run_all("before", &job_config.before, &env).await {
            tracing::warn!(job, trigger = trigger.as_str(), cause = %message, "run skipped");
            finish(backups, run_id, Outcome::Skipped, Some(message.clone())).await;
            pings.ping(Signal::Fail, format!("skipped: {message}"));
            backups
                .core
                .audit(
                    actor,
                    &action,
                    AuditOutcome::Failed,
                    format!("{} run skipped: {message}", trigger.as_str()),
                )
                .await;
            return Err(RunError::Skipped {
                job: job.to_owned(),
                message,
            });
        }
    }

    let (result, cancelled) = back_up(backups, &config, job, &progress).await;
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => {
            let (outcome, err) = if cancelled {
                (
                    Outcome::Cancelled,
                    RunError::Cancelled {
                        job: job.to_owned(),
                    },
                )
            } else {
                (Outcome::Failed, RunError::Backup(err))
            };
            tracing::error!(job, trigger = trigger.as_str(), cause = %err, "backup failed");
            env.push(("DRD_OUTCOME", "failed".to_owned()));
            let mut message = err.to_string();
            for failure in after_hooks(&progress, job, &job_config, &env).await {
                message.push_str(&format!("; {failure}"));
            }
            finish(backups, run_id, outcome, Some(message.clone())).await;
            pings.ping(Signal::Fail, message.clone());
            backups
                .core
                .audit(
                    actor,
                    &action,
                    AuditOutcome::Failed,
                    format!("{} run: {message}", trigger.as_str()),
                )
                .await;
            return Err(err);
        }
    };

    let mut report = report::backup_report(&summary, &tier);
    let info = report.snapshot.clone();
    if let Err(err) = backups
        .core
        .catalog
        .call("cache snapshot", move |conn| {
            snapshot_cache::insert(conn, &info)
        })
        .await
    {
        // The snapshot is safe in the repository; the cache rebuilds on the next list.
        tracing::warn!(cause = %err, "cannot cache the new snapshot");
    }
    let stats = serde_json::to_string(&report).ok();
    let snapshot_id = report.snapshot.id.clone();
    let record_ok = |notes: Option<String>| {
        let (id, tier, stats) = (snapshot_id.clone(), tier.clone(), stats.clone());
        async move {
            if let Some(run_id) = run_id {
                record(backups, "record run end", move |c| {
                    runs::finish(
                        c,
                        run_id,
                        &Finish {
                            ended_ms: now_ms(),
                            outcome: Outcome::Ok,
                            snapshot: Some((&id, &tier)),
                            stats,
                            error: notes,
                        },
                    )
                })
                .await;
            }
        }
    };
    record_ok(None).await;

    env.push(("DRD_OUTCOME", "ok".to_owned()));
    env.push(("DRD_SNAPSHOT", snapshot_id.clone()));
    let mut notes = after_hooks(&progress, job, &job_config, &env).await;
    let policy = job_config.retention_policy();
    let mut retained = String::new();
    if !policy.is_empty() {
        phase(&progress, job, "retention", 1);
        match retention::apply_after_run(&backups.tiers, &config, job, &policy).await {
            Ok(line) => retained = format!("; {line}"),
            Err(err) => {
                let note = format!("retention did not run: {err}");
                tracing::warn!(job, cause = %err, "retention after the run failed");
                notes.push(note);
            }
        }
    }
    if !notes.is_empty() {
        report.warnings.extend(notes.iter().cloned());
        record_ok(Some(notes.join("; "))).await;
    }
    // Copy the new snapshot offsite now; after retention, so that the copy does not
    // hold the repository while prune wants it alone.
    backups.replication.notify_one();

    pings.ping(
        Signal::Success,
        format!(
            "snapshot {}: {} bytes added",
            report.snapshot.id, report.bytes_added
        ),
    );
    backups
        .core
        .audit(
            actor,
            &action,
            AuditOutcome::Ok,
            format!(
                "{} run: snapshot {} in {} ({}): {} new, {} changed, {} unchanged files; {} bytes read, {} added{retained}",
                trigger.as_str(),
                report.snapshot.id,
                tier,
                tier_location,
                report.files_new,
                report.files_changed,
                report.files_unchanged,
                report.bytes_read,
                report.bytes_added
            ),
        )
        .await;
    Ok(report)
}

/// The backup proper, on the blocking pool; cancelled when the daemon stops. Returns
/// the result and whether it was cancelled. `config` is the run's snapshot, taken at
/// its start: a reload during the run does not change the job it backs up.
async fn back_up(
    backups: &Backups,
    config: &Arc<LoadedConfig>,
    job: &str,
    progress: &RunProgress,
) -> (Result<drd_repo::BackupSummary, BackupError>, bool) {
    let (config, opener) = (config.clone(), backups.tiers.clone());
    let scratch = backup::scratch_dir(&backups.core.state_dir);
    let holds = backups.holds.clone();
    // A daemon that is stopping cancels the backup; what was written stays valid
    // (packs without an index are reclaimed later) and no snapshot is recorded.
    let cancel = Arc::new(AtomicBool::new(false));
    let stopping = backups.core.stopping.clone();
    let flag = cancel.clone();
    let watcher = tokio::spawn(async move {
        stopping.cancelled().await;
        flag.store(true, Ordering::SeqCst);
    });
    let defaults = drd_repo::BackupOptions::default();
    let daemon = &config.config.daemon;
    let options = drd_repo::BackupOptions {
        cancel: Some(cancel.clone()),
        threads: match daemon.backup_threads {
            0 => defaults.threads,
            n => n,
        },
        max_in_flight_bytes: daemon.backup_buffer_mib << 20,
        compression_level: daemon.compression_level,
        ..defaults
    };
    let (job, progress) = (job.to_owned(), progress.clone());
    let task = format!("backup {job}");
    let result = tokio::task::spawn_blocking(move || {
        let target = backup::job_target(&config, &job)?;
        let tier = target.tier_name;
        let mut waited = false;
        let mut waiting = |holder: &str| {
            if !waited {
                tracing::info!(
                    job = %job, tier, holder,
                    "backup waits for the repository lock: a prune or repair holds the tier"
                );
                waited = true;
            }
            progress(Progress {
                task: format!("{job}: waiting for the repository lock"),
                done: 0,
                total: None,
                unit: ProgressUnit::Items,
                detail: format!(
                    "tier {tier} is held by {holder} (a prune or repair); waiting up to {} min",
                    backup::LOCK_WAIT.as_secs() / 60
                ),
            });
        };
        let repo = opener.open_or_init(target.tier, config.keys()?)?;
        backup::run_backup(
            repo,
            &target,
            &scratch,
            &holds,
            &options,
            &mut waiting,
            &mut |p| {
                progress(Progress {
                    task: task.clone(),
                    done: p.bytes_done,
                    total: p.bytes_expected,
                    unit: ProgressUnit::Bytes,
                    detail: format!("{} files; {}", p.files_done, p.current_path),
                });
            },
        )
    })
    .await
    .unwrap_or_else(|join| {
        Err(BackupError::Repo(drd_repo::Error::Internal(format!(
            "the backup task failed: {join}"
        ))))
    });
    watcher.abort();
    (result, cancel.load(Ordering::SeqCst))
}

/// Runs the `after` hooks; returns their failures.
async fn after_hooks(
    progress: &RunProgress,
    job: &str,
    config: &drd_core::config::JobConfig,
    env: &[(&str, String)],
) -> Vec<String> {
    if config.after.is_empty() {
        return Vec::new();
    }
    phase(progress, job, "after hooks", config.after.len());
    let failures = hooks::run_each("after", &config.after, env).await;
    for failure in &failures {
        tracing::warn!(job, cause = %failure, "after hook failed");
    }
    failures
}

/// Reports that a run entered `phase`.
fn phase(progress: &RunProgress, job: &str, phase: &str, steps: usize) {
    progress(Progress {
        task: format!("{job}: {phase}"),
        done: 0,
        total: Some(steps as u64),
        unit: ProgressUnit::Items,
        detail: String::new(),
    });
}

/// Records how run `run_id` ended without a snapshot.
async fn finish(backups: &Backups, run_id: Option<i64>, outcome: Outcome, error: Option<String>) {
    if let Some(run_id) = run_id {
        record(backups, "record run end", move |c| {
            runs::finish(
                c,
                run_id,
                &Finish {
                    ended_ms: now_ms(),
                    outcome,
                    snapshot: None,
                    stats: None,
                    error,
                },
            )
        })
        .await;
    }
}

/// Runs a catalog write for the run record; a failure is logged, not fatal: the
/// backup matters more than its record.
async fn record<T: Send + 'static>(
    backups: &Backups,
    op: &'static str,
    f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Option<T> {
    match backups.core.catalog.call(op, f).await {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(cause = %err, op, "cannot record the run in the catalog");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_once_at_a_time_and_is_free_again_after() {
        let running = Mutex::new(HashSet::new());
        let first = Claim::take(&running, "db").unwrap();
        let err = Claim::take(&running, "db").err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert_eq!(
            err.to_string(),
            "job db is already running; wait for it to finish"
        );
        let other = Claim::take(&running, "logs").unwrap();
        drop(first);
        let again = Claim::take(&running, "db").unwrap();
        drop((other, again));
        assert!(running.lock().unwrap().is_empty());
    }
}
