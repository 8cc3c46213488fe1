//! An abort: the run stops at its safe point (or, taken over after drd died, where
//! the record says it was), waits for the level already signalled, and with rollback
//! starts again what was stopped, the deepest dependency first.
//!
//! What to start comes from the record and this run together (`Svc::touched`: a
//! stop was begun on it, by either drd), never from a look that might catch a
//! service half-way down: a service still stopping is first waited for.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use drd_proto::{
    AbortReport, EventState, ServiceResult, ServiceState, ShutdownOutcome, ShutdownPhase,
};
use futures::future::join_all;

use super::steps::Step;
use super::{Run, Svc};
use crate::drivers;
use crate::Finished;
use drd_core::audit::Outcome;

/// A rollback waits at least this long for a service to come back.
const MIN_START_WAIT: Duration = Duration::from_secs(30);

impl Run {
    /// Stops here; with rollback, starts again what this run (or the drd that died)
    /// stopped.
    pub(super) async fn abort_now(&mut self) -> Finished {
        if self.services.is_empty() {
            self.assess().await;
        }
        let rollback = self.rollback.load(Ordering::SeqCst);
        let stopped_at = if self.takeover {
            format!("{}, where drd died", self.record.interrupted_at(&self.plan))
        } else {
            self.at.clone()
        };
        self.emit(
            ShutdownPhase::Done,
            None,
            EventState::Aborted,
            format!("stopped at {stopped_at}"),
        );
        self.audit(
            "aborted",
            Outcome::Ok,
            format!(
                "stopped at {stopped_at}{}",
                if rollback {
                    "; rolling back"
                } else {
                    "; no rollback"
                }
            ),
        )
        .await;
        let mut abort = AbortReport {
            run_id: self.run_id,
            stopped_at,
            rolled_back: rollback,
            started: Vec::new(),
            problems: Vec::new(),
        };
        // A level already signalled is waited for, whichever drd signalled it.
        self.finish_in_flight().await;
        let outcome = if rollback {
            self.phase(ShutdownPhase::Rollback).await;
            self.rollback_services(&mut abort).await;
            ShutdownOutcome::RolledBack
        } else {
            ShutdownOutcome::Halted
        };
        self.end(outcome, &abort.problems).await;
        Finished {
            report: self.report(outcome),
            abort: Some(abort),
        }
    }

    /// Why `name` must not be started: a dependency that did not come back (in
    /// `failed`), or one that was up before the shutdown and is down now.
    async fn dependency_down(&self, name: &str, failed: &BTreeSet<String>) -> Option<String> {
        for dep in &self.plan.steps[name].depends_on {
            if failed.contains(dep) {
                return Some(format!(
                    "not started: {dep}, which it depends on, did not start"
                ));
            }
            let Some(Svc {
                driver: Ok(driver),
                before,
                ..
            }) = self.services.get(dep)
            else {
                continue;
            };
            if before.running && matches!(driver.is_running(before).await, Ok(false)) {
                return Some(format!(
                    "not started: {dep}, which it depends on, is not running"
                ));
            }
        }
        None
    }

    /// Starts what was stopped, deepest dependency first, a level at a time; a
    /// service whose dependency did not come back is not started either.
    async fn rollback_services(&mut self, abort: &mut AbortReport) {
        let mut failed: BTreeSet<String> = BTreeSet::new();
        for level in (0..self.plan.levels.len()).rev() {
            let mut to_start = Vec::new();
            for name in self.plan.levels[level].clone() {
                let svc = &self.services[&name];
                if !svc.touched || !svc.before.running {
                    continue;
                }
                let still_running = match &svc.driver {
                    Ok(driver) => driver.is_running(&svc.before).await.unwrap_or(false),
                    Err(_) => true,
                };
                if still_running {
                    continue;
                }
                if let Some(why) = self.dependency_down(&name, &failed).await {
                    abort.problems.push(format!("{name}: {why}"));
                    self.emit(
                        ShutdownPhase::Rollback,
                        Some(&name),
                        ServiceState::NotStarted,
                        why,
                    );
                    failed.insert(name);
                    continue;
                }
                to_start.push(name);
            }
            if to_start.is_empty() {
                continue;
            }
            let ids = self.begin(ShutdownPhase::Rollback, to_start.clone()).await;
            let this = &*self;
            let results = join_all(to_start.iter().zip(&ids).map(|(name, id)| async move {
                let step = &this.plan.steps[name];
                let svc = &this.services[name];
                let wait = step.config.stop_timeout().max(MIN_START_WAIT);
                this.emit(
                    ShutdownPhase::Rollback,
                    Some(name),
                    EventState::Starting,
                    if svc.start_in_flight {
                        format!(
                            "waiting up to {}: its start began before drd was restarted",
                            humantime::format_duration(wait)
                        )
                    } else {
                        String::new()
                    },
                );
                let t0 = Instant::now();
                let came_up = match &svc.driver {
                    Ok(driver) if svc.start_in_flight => came_up(driver, &svc.before, wait).await,
                    _ => false,
                };
                let mut result = match &svc.driver {
                    _ if came_up => Ok(()),
                    Ok(driver) => driver
                        .start(&svc.before, wait)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(err) => Err(err.clone()),
                };
                if result.is_ok() {
                    if let Some(health) = &step.config.health {
                        this.emit(
                            ShutdownPhase::Rollback,
                            Some(name),
                            EventState::WaitingForHealth,
                            health
                                .probe(&step.config)
                                .map_or_else(|err| err, |probe| probe.to_string()),
                        );
                        result = drivers::wait_healthy(&step.config).await;
                    }
                }
                let took = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
                let (state, detail) = match &result {
                    Ok(()) if came_up => (
                        ServiceState::Started,
                        format!("up {took} ms after drd was restarted; its start began before"),
                    ),
                    Ok(()) => (ServiceState::Started, format!("in {took} ms")),
                    Err(err) => (ServiceState::NotStarted, err.clone()),
                };
                let ended = Step::new(
                    ShutdownPhase::Rollback,
                    Some(name),
                    state,
                    result.is_ok(),
                    detail.clone(),
                );
                this.ended(*id, ended.audited(format!("rollback start {name}")))
                    .await;
                ServiceResult {
                    name: name.clone(),
                    level: u32::try_from(step.level).unwrap_or(u32::MAX),
                    state,
                    took_ms: Some(took),
                    detail,
                }
            }))
            .await;
            for result in results {
                if result.state != ServiceState::Started {
                    abort
                        .problems
                        .push(format!("{}: {}", result.name, result.detail));
                    failed.insert(result.name.clone());
                }
                if let Some(svc) = self.services.get_mut(&result.name) {
                    svc.running = result.state == ServiceState::Started;
                    svc.result = result.clone();
                }
                abort.started.push(result);
            }
        }
    }
}

/// Waits up to `wait` for a service whose start the drd that died began to run.
async fn came_up(driver: &drivers::Driver, before: &drivers::Assessment, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if matches!(driver.is_running(before).await, Ok(true)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
