//! The emergency backup: every `critical` job, now, one after another in priority
//! order (lower first, then by name), each through [`super::run_job`].
//!
//! It answers "back up everything that matters, right now, before I pull the plug".
//! A job that is already running is waited for and then run again, since its run
//! started before whatever made this an emergency. A failing job does not stop the
//! others. The emergency is audited as one entry, and each run as its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drd_core::audit::{Actor, Outcome};
use drd_proto::{EmergencyReport, EmergencyRun, Progress, ProgressUnit};

use super::{run_job, RunError, RunProgress, Trigger};
use crate::Backups;

/// How often a busy job is asked again.
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// The critical jobs in the config in force, in the order an emergency runs them.
pub fn critical_jobs(config: &drd_core::config::Config) -> Vec<(String, i32)> {
    let mut jobs: Vec<(String, i32)> = config
        .jobs
        .iter()
        .filter(|(_, job)| job.critical)
        .map(|(name, job)| (name.clone(), job.priority))
        .collect();
    jobs.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    jobs
}

/// Runs every critical job; `progress` sees each run with its task prefixed
/// `[i/n] `. Fails only when there is no critical job.
pub async fn run_emergency(
    backups: &Backups,
    actor: &Actor,
    progress: RunProgress,
) -> Result<EmergencyReport, RunError> {
    let jobs = critical_jobs(&backups.core.config().config);
    if jobs.is_empty() {
        return Err(RunError::NotFound(
            "no job is marked critical = true; mark the jobs an emergency backup must run"
                .to_owned(),
        ));
    }
    let started = Instant::now();
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    tracing::warn!(jobs = %names.join(", "), "emergency backup starting");
    let total = jobs.len();
    let mut report = EmergencyReport {
        runs: Vec::new(),
        elapsed_ms: 0,
    };
    for (i, (job, priority)) in jobs.iter().enumerate() {
        let prefix = format!("[{}/{total}] ", i + 1);
        let inner = progress.clone();
        let prefixed: RunProgress = Arc::new(move |mut p: Progress| {
            p.task = format!("{prefix}{}", p.task);
            inner(p);
        });
        let run_started = Instant::now();
        let result = loop {
            match run_job(backups, job, Trigger::Emergency, actor, prefixed.clone()).await {
                Err(RunError::Busy { .. }) if !backups.core.stopping.is_cancelled() => {
                    prefixed(Progress {
                        task: format!("{job}: waiting"),
                        done: 0,
                        total: None,
                        unit: ProgressUnit::Items,
                        detail: "a run of this job is in progress; running again after it"
                            .to_owned(),
                    });
                    tokio::time::sleep(BUSY_RETRY).await;
                }
                other => break other,
            }
        };
        report.runs.push(EmergencyRun {
            job: job.clone(),
            priority: *priority,
            outcome: if result.is_ok() {
                drd_proto::RunOutcome::Ok
            } else {
                drd_proto::RunOutcome::Failed
            },
            snapshot: result.as_ref().ok().map(|r| r.snapshot.id.clone()),
            elapsed_ms: u64::try_from(run_started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error: result.err().map(|e| e.to_string()),
        });
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let failed: Vec<&str> = report
        .runs
        .iter()
        .filter(|r| r.outcome != drd_proto::RunOutcome::Ok)
        .map(|r| r.job.as_str())
        .collect();
    let detail = format!(
        "{} critical jobs in {} ms: {}",
        total,
        report.elapsed_ms,
        report
            .runs
            .iter()
            .map(|r| format!("{} {}", r.job, r.outcome))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let outcome = if failed.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    backups
        .core
        .audit(actor, "emergency backup", outcome, detail)
        .await;
    Ok(report)
}
