//! One drill run: the chosen scenarios in order, each result kept the moment it is
//! known, a failed drill's alert raised (and a passing one's resolved), the run
//! audited. Real work wins: a backup or shutdown that starts meanwhile cancels the
//! run at its next safe point, and the rest is recorded as cancelled with the reason.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use drd_alerts::Raise;
use drd_core::audit::{Actor, Outcome};
use drd_proto::{
    Category, DrillOutcome, DrillResult, DrillRunReport, DrillTrigger, Scenario, Severity,
};
use tokio_util::sync::CancellationToken;

use crate::sandbox::Sandbox;
use crate::scenarios::{self, Drill, Finding};
use crate::{store, Drills, Error, ProgressFn, Result};

/// How often a running drill looks for real work that needs the host.
const PREEMPT_POLL: Duration = Duration::from_millis(200);

/// Which drills a run does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    /// Only this category's scenarios.
    pub category: Option<Category>,
    /// Only this scenario.
    pub scenario: Option<Scenario>,
    /// Only the scenarios `[drills] scenarios` enables (the loop); `drctl test run`
    /// may run any.
    pub enabled_only: bool,
}

impl Filter {
    fn chosen(&self, enabled: &[Scenario]) -> Vec<Scenario> {
        Scenario::ALL
            .iter()
            .copied()
            .filter(|s| !self.enabled_only || enabled.contains(s))
            .filter(|s| self.scenario.is_none_or(|only| only == *s))
            .filter(|s| {
                self.category
                    .is_none_or(|c| scenarios::categories(*s).contains(&c))
            })
            .collect()
    }
}

/// What real work holds the host now, if any: a running shutdown or recovery, or a
/// backup job.
pub(crate) fn host_busy(drills: &Drills) -> Option<String> {
    if let Some((kind, run_id)) = drills.shutdowns.running() {
        return Some(format!("{} #{run_id} is running", kind.as_str()));
    }
    let running = drills
        .backups
        .running_jobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut jobs: Vec<&String> = running.iter().collect();
    jobs.sort();
    jobs.first()
        .map(|job| format!("a backup of job {job} started"))
}

/// Releases the one drill slot on every path.
struct Slot<'a>(&'a Drills);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.slot() = None;
    }
}

pub(crate) async fn run(
    drills: &Arc<Drills>,
    trigger: DrillTrigger,
    filter: Filter,
    progress: ProgressFn,
) -> Result<DrillRunReport> {
    let config = drills.core.config();
    let chosen = filter.chosen(&config.config.drills.scenarios);
    if chosen.is_empty() {
        return Err(Error::NothingToRun(format!(
            "no scenario matches{}{}; `drctl test list` shows them",
            filter
                .scenario
                .map(|s| format!(" scenario {s}"))
                .unwrap_or_default(),
            filter
                .category
                .map(|c| format!(" category {c}"))
                .unwrap_or_default(),
        )));
    }
    if let Some(why) = host_busy(drills) {
        return Err(Error::HostBusy(why));
    }
    let token = drills.core.stopping.child_token();
    let started_ms = drills.clock.now_ms();
    let _slot = {
        let mut slot = drills.slot();
        if let Some((started, _)) = slot.as_ref() {
            return Err(Error::Busy {
                started: drd_proto::text::time(*started),
            });
        }
        *slot = Some((started_ms, token.clone()));
        Slot(drills)
    };
    let run_id = store::start_run(&drills.core.catalog, trigger, started_ms).await?;
    tracing::info!(
        run = run_id,
        trigger = trigger.as_str(),
        "drill run started"
    );

    let why_cancelled = Arc::new(Mutex::new(None::<String>));
    let watcher = tokio::spawn(preempt(
        drills.clone(),
        token.clone(),
        why_cancelled.clone(),
    ));
    let mut results = Vec::new();
    let sandbox_dir = config
        .config
        .drills
        .sandbox_dir(&config.config.daemon.state_dir);
    match Sandbox::prepare(&sandbox_dir, config.config.drills.headroom_mib) {
        Ok(sandbox) => {
            let drill = Drill::new(
                drills.clone(),
                config.clone(),
                sandbox,
                token.clone(),
                progress,
            );
            for &scenario in &chosen {
                if token.is_cancelled() {
                    results.push(cancelled(scenario, &why_cancelled));
                    continue;
                }
                drill.step(scenario.as_str(), "starting".to_owned());
                for finding in scenarios::run(scenario, &drill).await {
                    if filter.category.is_some_and(|c| c != finding.category) {
                        continue;
                    }
                    let result = to_result(scenario, finding);
                    keep(drills, run_id, &result).await;
                    results.push(result);
                }
                if token.is_cancelled() {
                    results.push(cancelled(scenario, &why_cancelled));
                }
            }
        }
        Err(why) => {
            for &scenario in &chosen {
                let finding = Finding::failed(
                    scenarios::category(scenario),
                    "sandbox".to_owned(),
                    std::time::Instant::now(),
                    why.clone(),
                );
                let result = to_result(scenario, finding);
                keep(drills, run_id, &result).await;
                results.push(result);
            }
        }
    }
    watcher.abort();
    for result in results
        .iter()
        .filter(|r| r.outcome == DrillOutcome::Cancelled)
    {
        keep(drills, run_id, result).await;
    }

    let outcome = overall(&results);
    let finished_ms = drills.clock.now_ms();
    store::finish_run(&drills.core.catalog, run_id, outcome, finished_ms).await?;
    let count = |o: DrillOutcome| results.iter().filter(|r| r.outcome == o).count();
    let mut detail = format!(
        "drill run #{run_id} ({trigger}): {} drills, {} passed, {} failed, {} cancelled",
        results.len(),
        count(DrillOutcome::Pass),
        count(DrillOutcome::Fail),
        count(DrillOutcome::Cancelled),
    );
    for failed in results.iter().filter(|r| r.outcome == DrillOutcome::Fail) {
        detail.push_str(&format!(
            "; FAIL {} {}: {}",
            failed.scenario, failed.subject, failed.evidence
        ));
    }
    let audit_outcome = match outcome {
        DrillOutcome::Pass => Outcome::Ok,
        DrillOutcome::Fail => Outcome::Failed,
        DrillOutcome::Cancelled => Outcome::Refused,
    };
    let actor = match trigger {
        DrillTrigger::Schedule => Actor::Monitor("drills".to_owned()),
        DrillTrigger::Manual => Actor::Daemon,
    };
    drills
        .core
        .audit(&actor, "drill run", audit_outcome, detail)
        .await;
    tracing::info!(run = run_id, outcome = outcome.as_str(), "drill run ended");
    Ok(DrillRunReport {
        id: run_id,
        trigger,
        started_unix_ms: started_ms,
        finished_unix_ms: finished_ms,
        outcome,
        results,
    })
}

/// Records a scheduled run that could not start because real work held the host: a
/// run of the enabled scenarios, each cancelled with `why`, so the gap in the drill
/// history explains itself.
pub(crate) async fn record_yield(drills: &Drills, why: String) -> Result<i64> {
    let config = drills.core.config();
    let now = drills.clock.now_ms();
    let run_id = store::start_run(&drills.core.catalog, DrillTrigger::Schedule, now).await?;
    let why = Mutex::new(Some(why));
    for &scenario in &config.config.drills.scenarios {
        keep(drills, run_id, &cancelled(scenario, &why)).await;
    }
    store::finish_run(&drills.core.catalog, run_id, DrillOutcome::Cancelled, now).await?;
    let why = why
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .unwrap_or_default();
    drills
        .core
        .audit(
            &Actor::Monitor("drills".to_owned()),
            "drill run",
            Outcome::Refused,
            format!("drill run #{run_id} (schedule) cancelled before it started: {why}"),
        )
        .await;
    Ok(run_id)
}

/// Cancels `token` when real work needs the host, noting why: a shutdown, recovery
/// or backup that started after the drill did (even one already over), or drd
/// stopping.
async fn preempt(drills: Arc<Drills>, token: CancellationToken, why: Arc<Mutex<Option<String>>>) {
    let (shutdowns, backups) = (drills.shutdowns.last_launched(), drills.backups.started());
    let started_since = |drills: &Drills| {
        if let Some((kind, run_id)) = drills
            .shutdowns
            .last_launched()
            .filter(|l| Some(*l) != shutdowns)
        {
            return Some(format!("{} #{run_id} is running", kind.as_str()));
        }
        let now = drills.backups.started();
        (now.0 != backups.0).then(|| format!("a backup of job {} started", now.1))
    };
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            () = tokio::time::sleep(PREEMPT_POLL) => {}
        }
        let reason = if drills.core.stopping.is_cancelled() {
            Some("drd is stopping".to_owned())
        } else {
            started_since(&drills).or_else(|| host_busy(&drills))
        };
        if let Some(reason) = reason {
            tracing::info!(reason = %reason, "drill run yields to real work");
            *why.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
            token.cancel();
            break;
        }
    }
}

fn cancelled(scenario: Scenario, why: &Mutex<Option<String>>) -> DrillResult {
    let why = why
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| "drd is stopping".to_owned());
    DrillResult {
        scenario,
        category: scenarios::category(scenario),
        subject: "-".to_owned(),
        outcome: DrillOutcome::Cancelled,
        rto_ms: None,
        rpo_ms: None,
        target_rto_ms: None,
        target_rpo_ms: None,
        evidence: format!("cancelled: {why}"),
        duration_ms: 0,
    }
}

fn to_result(scenario: Scenario, f: Finding) -> DrillResult {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    DrillResult {
        scenario,
        category: f.category,
        subject: f.subject,
        outcome: f.outcome,
        rto_ms: f.rto.map(ms),
        rpo_ms: f.rpo.map(ms),
        target_rto_ms: f.target_rto.map(ms),
        target_rpo_ms: f.target_rpo.map(ms),
        evidence: f.evidence,
        duration_ms: ms(f.duration),
    }
}

fn overall(results: &[DrillResult]) -> DrillOutcome {
    let any = |o: DrillOutcome| results.iter().any(|r| r.outcome == o);
    if any(DrillOutcome::Fail) {
        DrillOutcome::Fail
    } else if any(DrillOutcome::Cancelled) {
        DrillOutcome::Cancelled
    } else {
        DrillOutcome::Pass
    }
}

/// Keeps a finished drill: in the catalog (now, so a kill loses nothing measured),
/// and as an alert that a failure raises and a pass resolves.
async fn keep(drills: &Drills, run_id: i64, result: &DrillResult) {
    let now = drills.clock.now_ms();
    if let Err(err) = store::add_result(&drills.core.catalog, run_id, result.clone(), now).await {
        tracing::error!(cause = %err, "cannot record a drill result");
    }
    let source = format!("drills/{} {}", result.scenario, result.subject);
    let outcome = match result.outcome {
        DrillOutcome::Pass => drills.alerts.resolve(&source).await.map(|_| ()),
        DrillOutcome::Fail => {
            tracing::warn!(scenario = %result.scenario, subject = %result.subject, cause = %result.evidence, "drill failed");
            let severity = match result.scenario {
                Scenario::BackupValidation
                | Scenario::DatabaseRecovery
                | Scenario::StorageFailure => Severity::Critical,
                _ => Severity::Warning,
            };
            drills
                .alerts
                .raise(Raise {
                    severity,
                    source,
                    summary: format!(
                        "recovery drill failed: {} {}",
                        result.scenario, result.subject
                    ),
                    evidence: result.evidence.clone(),
                })
                .await
                .map(|_| ())
        }
        DrillOutcome::Cancelled => Ok(()),
    };
    if let Err(err) = outcome {
        tracing::error!(cause = %err, "cannot raise or resolve a drill's alert");
    }
}
