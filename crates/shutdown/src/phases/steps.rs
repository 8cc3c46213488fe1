//! The step recorder: a step of a run is written to the checkpoint record, streamed
//! to every follower and appended to the audit log, and these three say the same
//! thing. [`Run::ended`] does all three from one [`Step`]; [`Run::passed`] records a
//! step that is over as soon as it begins (a phase boundary, the run's end).
//!
//! A catalog that fails here is logged and the run goes on: stopping the services
//! matters more than the record of it.

use drd_proto::{Event, EventState, ShutdownEvent, ShutdownPhase};

use super::Run;
use crate::checkpoints::{self, StepEnd};
use drd_core::audit::Outcome;

/// How one step ended, for [`Run::ended`].
pub(super) struct Step<'a> {
    phase: ShutdownPhase,
    /// The event's subject (the service, the job); `None` for the phase itself.
    subject: Option<&'a str>,
    state: EventState,
    end: StepEnd,
    detail: String,
    /// JSON the step needs later (an assessment).
    record: Option<String>,
    /// The audit entry: action (after `shutdown #N`), outcome, detail.
    audit: Option<(String, Outcome, String)>,
}

impl<'a> Step<'a> {
    /// A step that ended `done` when `ok`, else `failed`; streamed as `state`.
    pub(super) fn new(
        phase: ShutdownPhase,
        subject: Option<&'a str>,
        state: impl Into<EventState>,
        ok: bool,
        detail: String,
    ) -> Step<'a> {
        Step {
            phase,
            subject,
            state: state.into(),
            end: if ok { StepEnd::Done } else { StepEnd::Failed },
            detail,
            record: None,
            audit: None,
        }
    }

    /// A step that ended `done` when `ok`, else `failed`, and is streamed so.
    pub(super) fn finished(
        phase: ShutdownPhase,
        subject: Option<&'a str>,
        ok: bool,
        detail: String,
    ) -> Step<'a> {
        let state = if ok {
            EventState::Done
        } else {
            EventState::Failed
        };
        Step::new(phase, subject, state, ok, detail)
    }

    /// Also audited as `action`, ok or failed as the step, with its detail.
    pub(super) fn audited(self, action: String) -> Step<'a> {
        let detail = self.detail.clone();
        self.audited_saying(action, detail)
    }

    /// Also audited as `action`, ok or failed as the step, saying `detail`.
    pub(super) fn audited_saying(self, action: String, detail: String) -> Step<'a> {
        let outcome = self.outcome();
        self.audited_as(action, outcome, detail)
    }

    /// Also audited as `action` with its own outcome and detail.
    pub(super) fn audited_as(
        mut self,
        action: String,
        outcome: Outcome,
        detail: String,
    ) -> Step<'a> {
        self.audit = Some((action, outcome, detail));
        self
    }

    /// Keeps `record` (JSON) with the checkpoint.
    pub(super) fn with_record(mut self, record: Option<String>) -> Step<'a> {
        self.record = record;
        self
    }

    fn outcome(&self) -> Outcome {
        match self.end {
            StepEnd::Done => Outcome::Ok,
            StepEnd::Failed => Outcome::Failed,
        }
    }
}

impl Run {
    /// Streams an event to every follower.
    pub(super) fn emit(
        &self,
        phase: ShutdownPhase,
        subject: Option<&str>,
        state: impl Into<EventState>,
        detail: String,
    ) {
        let _ = self.events.send(Event::Shutdown(ShutdownEvent {
            run_id: self.run_id,
            elapsed_ms: self.elapsed_ms(),
            phase,
            subject: subject.map(str::to_owned),
            state: state.into(),
            detail,
        }));
    }

    /// Appends `shutdown #N ACTION` (or `recovery #N ACTION`) to the audit log.
    pub(super) async fn audit(&self, action: &str, outcome: Outcome, detail: String) {
        self.shared
            .core
            .audit(
                &self.actor,
                &format!("{} #{} {action}", self.kind(), self.run_id),
                outcome,
                detail,
            )
            .await;
    }

    /// Records steps as started; ids are 0 where the catalog failed (logged).
    pub(super) async fn begin(&self, phase: ShutdownPhase, subjects: Vec<String>) -> Vec<i64> {
        let n = subjects.len();
        checkpoints::begin_steps(
            &self.shared.core.catalog,
            self.run_id,
            phase.as_str(),
            subjects,
        )
        .await
        .unwrap_or_else(|err| {
            tracing::error!(cause = %err, "cannot write a shutdown checkpoint");
            vec![0; n]
        })
    }

    /// Ends step `id` (from [`Run::begin`]): checkpoint, event, audit entry.
    pub(super) async fn ended(&self, id: i64, step: Step<'_>) {
        if id != 0 {
            let catalog = &self.shared.core.catalog;
            let detail = step.detail.clone();
            if let Err(err) =
                checkpoints::end_step(catalog, id, step.end, detail, step.record).await
            {
                tracing::error!(cause = %err, "cannot write a shutdown checkpoint");
            }
        }
        self.emit(step.phase, step.subject, step.state, step.detail);
        if let Some((action, outcome, detail)) = step.audit {
            self.audit(&action, outcome, detail).await;
        }
    }

    /// Records a step of the phase itself (no subject) that is over as it begins.
    pub(super) async fn passed(&self, step: Step<'_>) {
        let id = self.begin(step.phase, vec![String::new()]).await[0];
        self.ended(id, step).await;
    }

    /// Announces a phase: streamed as started, checkpointed done, audited.
    pub(super) async fn phase(&mut self, phase: ShutdownPhase) {
        self.at = phase.as_str().to_owned();
        let audit = format!("{} ms in", self.elapsed_ms());
        let step = Step::new(phase, None, EventState::Started, true, String::new());
        self.passed(step.audited_as(format!("phase {phase}"), Outcome::Ok, audit))
            .await;
    }
}
