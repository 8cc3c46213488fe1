//! An abort: the run stops at its safe point (or, taken over after drd died, where
//! the record says it was), waits for the level already signalled, and with rollback
//! starts again what was stopped, the deepest dependency first.
//!
//! What to start comes from the record and this run together (`Svc::touched`: a
//! stop was begun on it, by either drd), never from a look that might catch a
//! service half-way down: a service still stopping is first waited for.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use drd_proto::{AbortReport, EventState, ShutdownOutcome, ShutdownPhase};

use super::Run;
use crate::Finished;
use drd_core::audit::Outcome;

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
        Finished::Shutdown {
            report: self.report(outcome),
            abort: Some(abort),
        }
    }

    /// Starts again what this run (or the drd that died) stopped, deepest
    /// dependency first.
    async fn rollback_services(&mut self, abort: &mut AbortReport) {
        let mut wanted = BTreeSet::new();
        for (name, svc) in &self.services {
            if svc.touched && svc.before.running {
                wanted.insert(name.clone());
            }
        }
        let started = self
            .start_levels(ShutdownPhase::Rollback, &wanted, false)
            .await;
        abort.problems.extend(started.problems);
        abort.started.extend(started.results);
    }
}
