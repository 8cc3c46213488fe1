//! The phases of a recovery: initiate (what starts, in which order), validate (the
//! go / no-go: the trigger cleared, each service's `validate` hook, the integrity of
//! the databases it owns), restore data (`--restore-data`), start (level by level,
//! waiting for health, through [`super::start`]), verify (running and healthy, then
//! `undrain`), done, with the measured RTO.
//!
//! Safe points, where an abort or a stopping drd takes effect, are before validate,
//! before the restore, before the start and between start levels. An aborted
//! recovery leaves what it started running. A resumed one that had begun to start
//! services does not ask for the go again: it was given.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::time::Duration;

use drd_core::audit::Outcome;
use drd_core::util::unix_ms_now;
use drd_proto::{
    EventState, RecoveryOutcome, RecoveryReport, ServiceResult, ServiceState, ShutdownPhase,
    ValidationCheck, RTO_SPAN,
};

use super::steps::Step;
use super::Run;
use crate::checkpoints;
use crate::drivers::{self, Assessment};
use crate::recover::{self as entry, Chosen, RecoverySpec};
use crate::Finished;
use drd_backup::backup;

/// A recovery's spec and what it has found so far.
#[derive(Debug)]
pub(in crate::phases) struct Recovery {
    spec: RecoverySpec,
    wanted: BTreeSet<String>,
    checks: Vec<ValidationCheck>,
    restored: Vec<String>,
    /// When every service was back: started, healthy, verified and undrained (Unix ms).
    /// The RTO ends here, so it covers all the recovery did to bring traffic back.
    back_at_ms: Option<i64>,
}

impl Recovery {
    pub(in crate::phases) fn new(spec: RecoverySpec) -> Recovery {
        Recovery {
            spec,
            wanted: BTreeSet::new(),
            checks: Vec::new(),
            restored: Vec::new(),
            back_at_ms: None,
        }
    }
}

impl Run {
    /// A service's state before the shutdown touched it: this run's record first
    /// (a resumed recovery), then the recovered shutdown's.
    pub(super) fn earlier_before(&self, name: &str) -> Option<Assessment> {
        self.record
            .before(name)
            .or_else(|| {
                let recovery = self.recovery.as_ref()?;
                recovery.spec.recovers.as_ref()?.record.before(name)
            })
            .cloned()
    }

    /// Runs the recovery to its end; `None` when drd stopped first and it was left
    /// interrupted.
    pub(super) async fn recovery_phases(&mut self) -> Option<Finished> {
        self.phase(ShutdownPhase::Initiate).await;
        // The assessment reads the shutdown's record through `self.recovery`.
        self.assess().await;
        let mut rec = self.recovery.take()?;
        rec.wanted = entry::wanted(&self.plan, &rec.spec);
        self.initiate(&rec);
        if let ControlFlow::Break(end) = self.recovery_safe_point(&mut rec).await {
            return end;
        }
        let go_given = rec.wanted.iter().any(|name| self.record.start_begun(name));
        if !go_given {
            self.phase(ShutdownPhase::Validate).await;
            if !self.validate(&mut rec).await {
                return Some(self.end_recovery(&mut rec, RecoveryOutcome::NoGo).await);
            }
            if rec.spec.request.restore_data {
                if let ControlFlow::Break(end) = self.recovery_safe_point(&mut rec).await {
                    return end;
                }
                self.phase(ShutdownPhase::RestoreData).await;
                if !self.restore_data(&mut rec).await {
                    return Some(self.end_recovery(&mut rec, RecoveryOutcome::NoGo).await);
                }
            }
        }
        if let ControlFlow::Break(end) = self.recovery_safe_point(&mut rec).await {
            return end;
        }
        self.phase(ShutdownPhase::Start).await;
        let started = self
            .start_levels(ShutdownPhase::Start, &rec.wanted.clone(), true)
            .await;
        self.problems.extend(started.problems);
        for held in started.held {
            if let Some(svc) = self.services.get_mut(&held.name) {
                svc.result = held;
            }
        }
        if started.stopped_early {
            if let ControlFlow::Break(end) = self.recovery_safe_point(&mut rec).await {
                return end;
            }
        }
        self.phase(ShutdownPhase::Verify).await;
        self.verify_recovery(&rec).await;
        rec.back_at_ms = Some(unix_ms_now());
        let outcome = if self.problems.is_empty() {
            RecoveryOutcome::Recovered
        } else {
            RecoveryOutcome::Incomplete
        };
        Some(self.end_recovery(&mut rec, outcome).await)
    }

    /// Between phases and start levels: goes on, or ends here.
    async fn recovery_safe_point(&mut self, rec: &mut Recovery) -> ControlFlow<Option<Finished>> {
        if self.leaving() {
            self.leave().await;
            ControlFlow::Break(None)
        } else if self.aborted() {
            let at = self.at.clone();
            self.emit(
                ShutdownPhase::Done,
                None,
                EventState::Aborted,
                format!("stopped at {at}; what was started keeps running"),
            );
            self.problems
                .push(format!("aborted at {at}; what was started keeps running"));
            ControlFlow::Break(Some(self.end_recovery(rec, RecoveryOutcome::Aborted).await))
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Streams what will start, level by level, and what is left alone.
    fn initiate(&mut self, rec: &Recovery) {
        self.at = "initiate".to_owned();
        for (i, level) in self.plan.levels.iter().rev().enumerate() {
            for name in level {
                let svc = &self.services[name];
                let detail = if !rec.wanted.contains(name) {
                    "was not running before the shutdown; left alone".to_owned()
                } else if svc.running {
                    "running already; left alone".to_owned()
                } else {
                    let deps = &self.plan.steps[name].depends_on;
                    format!(
                        "starts in step {}{}",
                        i + 1,
                        if deps.is_empty() {
                            String::new()
                        } else {
                            format!(", after {}", deps.join(", "))
                        }
                    )
                };
                self.emit(
                    ShutdownPhase::Initiate,
                    Some(name),
                    EventState::Done,
                    detail,
                );
            }
        }
    }

    /// The go / no-go: every check is a step; any failure is a no-go.
    async fn validate(&mut self, rec: &mut Recovery) -> bool {
        self.at = "validate".to_owned();
        let config = self.shared.core.config();
        let mut checks = vec![entry::trigger_check(&rec.spec)];
        checks.extend(
            entry::service_checks(&config.config, &rec.wanted, !rec.spec.request.restore_data)
                .await,
        );
        self.record_checks(&checks).await;
        let go = checks.iter().all(|c| c.ok);
        rec.checks.extend(checks);
        go
    }

    /// Records each check as a validate step, and its failures as problems.
    async fn record_checks(&mut self, checks: &[ValidationCheck]) {
        let subjects = checks.iter().map(|c| c.subject.clone()).collect();
        let ids = self.begin(ShutdownPhase::Validate, subjects).await;
        for (check, id) in checks.iter().zip(ids) {
            if !check.ok {
                self.problems
                    .push(format!("no-go: {}: {}", check.subject, check.detail));
            }
            let step = Step::finished(
                ShutdownPhase::Validate,
                Some(&check.subject),
                check.ok,
                check.detail.clone(),
            );
            self.ended(id, step.audited(format!("validate {}", check.subject)))
                .await;
        }
    }

    /// Restores each preserve job's snapshot where its data came from, then checks
    /// the databases again. Any failure is a no-go.
    async fn restore_data(&mut self, rec: &mut Recovery) -> bool {
        let config = self.shared.core.config();
        let jobs = entry::restore_sources(&config.config, &self.plan, &rec.wanted, &rec.spec);
        let mut ok = true;
        for (job, chosen) in jobs {
            let subject = format!("job {job}");
            self.at = format!("restore data {subject}");
            if self.done_earlier(ShutdownPhase::RestoreData, &subject) {
                self.emit(
                    ShutdownPhase::RestoreData,
                    Some(&job),
                    EventState::Done,
                    "done before drd was restarted".to_owned(),
                );
                continue;
            }
            let id = self
                .begin(ShutdownPhase::RestoreData, vec![subject.clone()])
                .await[0];
            self.emit(
                ShutdownPhase::RestoreData,
                Some(&job),
                EventState::Started,
                String::new(),
            );
            let result = self.restore_job(&job, chosen).await;
            let (detail, done) = match result {
                Ok(lines) => {
                    rec.restored.extend(lines.iter().cloned());
                    (lines.join("; "), true)
                }
                Err(err) => {
                    self.problems.push(format!("no-go: restore {job}: {err}"));
                    ok = false;
                    (err, false)
                }
            };
            let step = Step::finished(ShutdownPhase::RestoreData, Some(&job), done, detail);
            self.ended(id, step.audited(format!("restore data {job}")))
                .await;
        }
        if !ok {
            return false;
        }
        let mut checks = Vec::new();
        for name in &rec.wanted {
            checks.extend(entry::integrity_checks(&config.config, name).await);
        }
        self.record_checks(&checks).await;
        let go = checks.iter().all(|c| c.ok);
        rec.checks.extend(checks);
        go
    }

    /// Every started service running and healthy; then the `undrain` hooks.
    async fn verify_recovery(&mut self, rec: &Recovery) {
        self.at = "verify".to_owned();
        let id = self
            .begin(ShutdownPhase::Verify, vec!["services".to_owned()])
            .await[0];
        let mut down = Vec::new();
        for name in &rec.wanted {
            let svc = &self.services[name];
            if svc.result.state == ServiceState::NotStarted {
                continue; // already a problem
            }
            let running = match &svc.driver {
                Ok(driver) => driver.is_running(&svc.before).await.unwrap_or(false),
                Err(_) => false,
            };
            let config = &self.plan.steps[name].config;
            if !running {
                down.push(format!("{name} is not running"));
            } else if drivers::is_healthy(config).await == Some(false) {
                down.push(format!("{name} is running but not healthy"));
            }
        }
        let ok = down.is_empty();
        let detail = if ok {
            format!("all {} services are up and healthy", rec.wanted.len())
        } else {
            down.join("; ")
        };
        self.problems.extend(down);
        let step = Step::finished(ShutdownPhase::Verify, None, ok, detail);
        self.ended(id, step.audited("verify".to_owned())).await;

        for name in rec.wanted.clone() {
            let hooks = self.plan.steps[&name].config.undrain.clone();
            for (i, hook) in hooks.iter().enumerate() {
                let subject = format!("undrain {name} #{i}");
                if self.done_earlier(ShutdownPhase::Verify, &subject) {
                    continue;
                }
                let id = self
                    .begin(ShutdownPhase::Verify, vec![subject.clone()])
                    .await[0];
                let result = drivers::run_hook(hook).await;
                if let Err(err) = &result {
                    self.problems.push(format!("{subject}: {err}"));
                }
                let detail = result
                    .as_ref()
                    .map_or_else(Clone::clone, |()| hook.run.join(" "));
                let step = Step::finished(
                    ShutdownPhase::Verify,
                    Some(&subject),
                    result.is_ok(),
                    detail,
                );
                self.ended(id, step.audited(subject.clone())).await;
            }
        }
    }

    /// Records the outcome and the RTO: run row, checkpoint, event, audit.
    async fn end_recovery(&mut self, rec: &mut Recovery, outcome: RecoveryOutcome) -> Finished {
        let started_ms = rec
            .spec
            .recovers
            .as_ref()
            .map(|r| r.run.started_ms)
            .unwrap_or_else(|| unix_ms_now() - i64::try_from(self.elapsed_ms()).unwrap_or(0));
        let rto_ms = match (outcome, rec.back_at_ms) {
            (RecoveryOutcome::Recovered, Some(at)) => u64::try_from(at - started_ms).ok(),
            _ => None,
        };
        if let Err(err) = checkpoints::end_recovery(
            &self.shared.core.catalog,
            self.run_id,
            outcome.as_str(),
            rto_ms,
        )
        .await
        {
            tracing::error!(cause = %err, "cannot record the recovery's outcome");
        }
        let detail = format!(
            "{} in {} ms{}{}",
            outcome.as_str(),
            self.elapsed_ms(),
            rto_ms
                .map(|ms| format!(
                    "; RTO {} ({RTO_SPAN})",
                    humantime::format_duration(Duration::from_millis(ms / 100 * 100))
                ))
                .unwrap_or_default(),
            if self.problems.is_empty() {
                String::new()
            } else {
                format!("; problems: {}", self.problems.join("; "))
            }
        );
        let ok = outcome == RecoveryOutcome::Recovered;
        let audit = if ok { Outcome::Ok } else { Outcome::Failed };
        let step = Step::new(ShutdownPhase::Done, None, outcome, ok, detail.clone());
        self.passed(step.audited_as("done".to_owned(), audit, detail))
            .await;
        let mut services: Vec<ServiceResult> = rec
            .wanted
            .iter()
            .filter_map(|name| self.services.get(name))
            .map(|s| s.result.clone())
            .collect();
        services.sort_by(|a, b| (b.level, &a.name).cmp(&(a.level, &b.name)));
        Finished::Recovery(RecoveryReport {
            run_id: self.run_id,
            recovers: rec.spec.recovers.as_ref().map(|r| r.run.id),
            outcome,
            elapsed_ms: self.elapsed_ms(),
            rto_ms,
            checks: rec.checks.clone(),
            restored: rec.restored.clone(),
            services,
            problems: self.problems.clone(),
        })
    }
}

impl Run {
    /// Restores `job`'s chosen snapshot in place; one line per source.
    async fn restore_job(
        &self,
        job: &str,
        chosen: Result<Chosen, String>,
    ) -> Result<Vec<String>, String> {
        let backups = &self.shared.backups;
        let snapshot = match chosen? {
            Chosen::Taken(id) => id,
            Chosen::At(at) => backup::snapshot_at(backups, job, at)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "{job} has no snapshot at or before {}",
                        drd_core::util::rfc3339(at)
                    )
                })?,
        };
        backup::restore_in_place(backups, job, &snapshot)
            .await
            .map_err(|e| e.to_string())
    }
}
