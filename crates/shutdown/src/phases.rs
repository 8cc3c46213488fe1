//! The coordinator proper: one shutdown run through its phases (assess, preserve,
//! drain, stop, verify, done). This file is the driver; each phase has its file
//! ([`assess`], [`prepare`] for preserve and drain, [`stop`], [`verify`],
//! [`rollback`] for an abort), [`steps`] records every step and [`hold`] decides
//! what stays up when a service does not stop.
//!
//! Every step is checkpointed before and after it runs, streamed as an event and
//! audited. Safe points, where an abort takes effect, are between steps: before
//! each preserve job (a running job is cancelled, since nothing has stopped yet),
//! before each drain hook and before each stop level. A level that has been
//! signalled is always waited for, so no service is left half-stopped.
//!
//! A daemon that is stopping (SIGTERM) is honoured at the same safe points: the step
//! under way finishes and is checkpointed, and the run is left interrupted, as a
//! crash would leave it, for the next drd to resume or abort.
//!
//! A run carried on after drd died (resumed, or taken over by an abort) starts from
//! the [`Record`] the dead drd left, read once in [`super::record`].

mod assess;
mod hold;
mod prepare;
mod recover;
mod rollback;
mod start;
mod steps;
mod stop;
mod verify;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drd_proto::{
    Event, RunKind, ServiceResult, ShutdownOutcome, ShutdownPhase, ShutdownReport, ShutdownTrigger,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::drivers::{Assessment, Driver};
use super::plan::Plan;
use super::record::Record;
use super::{checkpoints, Finished, RunSpec};
use crate::Shutdowns;
use drd_core::audit::{Actor, Outcome};
use hold::Holds;
use steps::Step;

/// How often systemd is told to wait longer while a shutdown runs, and by how much.
const EXTEND_EVERY: Duration = Duration::from_secs(5);
const EXTEND_BY: Duration = Duration::from_secs(30);

/// One service during a run.
struct Svc {
    driver: Result<Driver, String>,
    /// Its state before the shutdown touched it (from an earlier drd when resumed).
    before: Assessment,
    /// Whether it runs now (as of the last look).
    running: bool,
    /// A stop was begun on it, by this run or by the drd that died.
    touched: bool,
    /// The drd that died signalled it and did not see it stop: it may still be
    /// stopping, so it is waited for and never signalled again.
    in_flight: bool,
    /// A rollback by the drd that died began to start it and did not see it come
    /// up: it is given the time to, before it is started again.
    start_in_flight: bool,
    result: ServiceResult,
}

/// How the outside reaches a run: its followers' events, and the abort.
pub(super) struct Controls {
    /// Every follower's events.
    pub events: broadcast::Sender<Event>,
    /// Cancelled by `drctl abort`.
    pub abort: CancellationToken,
    /// Whether the abort rolls back.
    pub rollback: Arc<AtomicBool>,
}

/// One shutdown run.
pub(super) struct Run {
    shared: Arc<Shutdowns>,
    run_id: i64,
    trigger: ShutdownTrigger,
    plan: Plan,
    actor: Actor,
    events: broadcast::Sender<Event>,
    abort: CancellationToken,
    rollback: Arc<AtomicBool>,
    /// What the drd that died recorded (empty for a new run).
    record: Record,
    /// An interrupted run taken straight to its abort.
    takeover: bool,
    started: Instant,
    services: BTreeMap<String, Svc>,
    /// What is kept running, and why.
    holds: Holds,
    problems: Vec<String>,
    /// The phase and step it was in when last seen, for the abort report.
    at: String,
    /// Shutdown or recovery.
    kind: RunKind,
    /// Set for a recovery until its phases take it: what it recovers from and how.
    recovery: Option<recover::Recovery>,
}

impl Run {
    pub(super) fn new(shared: Arc<Shutdowns>, spec: RunSpec, controls: Controls) -> Run {
        Run {
            shared,
            run_id: spec.run_id,
            trigger: spec.trigger,
            plan: spec.plan,
            actor: spec.actor,
            events: controls.events,
            abort: controls.abort,
            rollback: controls.rollback,
            record: spec.earlier,
            takeover: spec.abort_now.is_some(),
            started: Instant::now(),
            services: BTreeMap::new(),
            holds: Holds::default(),
            problems: Vec::new(),
            at: "assess".to_owned(),
            kind: if spec.recovery.is_some() {
                RunKind::Recovery
            } else {
                RunKind::Shutdown
            },
            recovery: spec.recovery.map(recover::Recovery::new),
        }
    }

    /// Shutdown or recovery.
    fn kind(&self) -> RunKind {
        self.kind
    }

    /// Runs the shutdown to its end, or to its abort and rollback; `None` when drd
    /// stopped first and the run was left interrupted.
    pub(super) async fn execute(mut self) -> Option<Finished> {
        let extend = tokio::spawn(async {
            loop {
                drd_core::systemd::extend_timeout(EXTEND_BY);
                tokio::time::sleep(EXTEND_EVERY).await;
            }
        });
        let kind = self.kind();
        let name = match kind {
            RunKind::Shutdown => "emergency shutdown",
            RunKind::Recovery => "recovery",
        };
        drd_core::systemd::status(&format!("{name} #{} running", self.run_id));
        let finished = match kind {
            RunKind::Shutdown => self.phases().await,
            RunKind::Recovery => self.recovery_phases().await,
        };
        extend.abort();
        let outcome = match &finished {
            Some(Finished::Shutdown { report, .. }) => Some(report.outcome.as_str()),
            Some(Finished::Recovery(report)) => Some(report.outcome.as_str()),
            None => None,
        };
        if let Some(outcome) = outcome {
            drd_core::systemd::status(&format!("serving; {name} #{} {outcome}", self.run_id));
        }
        finished
    }

    async fn phases(&mut self) -> Option<Finished> {
        self.phase(ShutdownPhase::Assess).await;
        self.assess().await;
        if !self.plan.force {
            if let ControlFlow::Break(end) = self.safe_point().await {
                return end;
            }
            self.phase(ShutdownPhase::Preserve).await;
            self.preserve().await;
            if let ControlFlow::Break(end) = self.safe_point().await {
                return end;
            }
            self.phase(ShutdownPhase::Drain).await;
            self.drain().await;
        }
        if let ControlFlow::Break(end) = self.safe_point().await {
            return end;
        }
        self.phase(ShutdownPhase::Stop).await;
        for level in 0..self.plan.levels.len() {
            if let ControlFlow::Break(end) = self.safe_point().await {
                return end;
            }
            self.stop_level(level).await;
        }
        // Past the last level there is no safe point: verify is a look, and the run
        // ends.
        self.phase(ShutdownPhase::Verify).await;
        self.verify().await;
        let outcome = if self.problems.is_empty() {
            ShutdownOutcome::Completed
        } else {
            ShutdownOutcome::Incomplete
        };
        self.end(outcome, &[]).await;
        Some(Finished::Shutdown {
            report: self.report(outcome),
            abort: None,
        })
    }

    /// Between steps: goes on, or ends the run here: with the abort's report, or
    /// with `None` when drd is stopping (the run is left interrupted).
    async fn safe_point(&mut self) -> ControlFlow<Option<Finished>> {
        if self.leaving() {
            self.leave().await;
            ControlFlow::Break(None)
        } else if self.aborted() {
            ControlFlow::Break(Some(self.abort_now().await))
        } else {
            ControlFlow::Continue(())
        }
    }

    fn aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Whether drd is stopping: the run stops at its next safe point, unfinished.
    fn leaving(&self) -> bool {
        self.shared.core.stopping.is_cancelled()
    }

    /// Leaves the run interrupted at a safe point: its record ends with the step
    /// that was under way, done, and the run stays `running` in the catalog.
    async fn leave(&mut self) {
        let kind = self.kind();
        let detail = format!(
            "drd is stopping; left interrupted at {}: once drd is back, {}",
            self.at,
            super::next_step(kind)
        );
        tracing::warn!(run_id = self.run_id, at = %self.at, %kind, "run left interrupted: drd is stopping");
        drd_core::systemd::status(&format!("{kind} #{} left interrupted", self.run_id));
        self.audit("interrupted", Outcome::Ok, detail).await;
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the drd that died already finished `phase` / `subject`.
    fn done_earlier(&self, phase: ShutdownPhase, subject: &str) -> bool {
        self.record.done(phase, subject)
    }

    /// Records the outcome: run row, checkpoint, event, audit. `rollback_problems`
    /// are what an abort's rollback could not start again.
    ///
    /// The audit entry is `ok` when the run did what was asked of it: every service
    /// down, or, after an abort, the halt or the rollback carried out in full. The
    /// shutdown's own problems before an abort are in its detail either way.
    async fn end(&mut self, outcome: ShutdownOutcome, rollback_problems: &[String]) {
        let problems: Vec<&str> = self
            .problems
            .iter()
            .chain(rollback_problems)
            .map(String::as_str)
            .collect();
        let detail = format!(
            "{} in {} ms{}",
            outcome.as_str(),
            self.elapsed_ms(),
            if problems.is_empty() {
                String::new()
            } else {
                format!("; problems: {}", problems.join("; "))
            }
        );
        let did_what_was_asked = match outcome {
            ShutdownOutcome::Completed => true,
            ShutdownOutcome::Incomplete => false,
            ShutdownOutcome::RolledBack | ShutdownOutcome::Halted => rollback_problems.is_empty(),
        };
        if let Err(err) =
            checkpoints::end_run(&self.shared.core.catalog, self.run_id, outcome.as_str()).await
        {
            tracing::error!(cause = %err, "cannot record the shutdown's outcome");
        }
        let audit = if did_what_was_asked {
            Outcome::Ok
        } else {
            Outcome::Failed
        };
        let step = Step::new(ShutdownPhase::Done, None, outcome, true, detail.clone());
        self.passed(step.audited_as("done".to_owned(), audit, detail))
            .await;
    }

    fn report(&self, outcome: ShutdownOutcome) -> ShutdownReport {
        let mut services: Vec<ServiceResult> =
            self.services.values().map(|s| s.result.clone()).collect();
        services.sort_by(|a, b| (a.level, &a.name).cmp(&(b.level, &b.name)));
        ShutdownReport {
            run_id: self.run_id,
            trigger: self.trigger,
            force: self.plan.force,
            outcome,
            elapsed_ms: self.elapsed_ms(),
            services,
            problems: self.problems.clone(),
        }
    }
}
