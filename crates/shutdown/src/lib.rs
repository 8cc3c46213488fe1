//! drd-shutdown: the emergency shutdown. It stops the configured services in
//! dependency order, with state saved first, checkpointed step by step, abortable with
//! rollback. It sits on drd-core (catalog, audit, command runner, Docker client) and
//! drd-backup (the preserve phase runs the services' backup jobs); the daemon wires it
//! to the socket and to SIGUSR1.
//!
//! | concern | module |
//! | --- | --- |
//! | entry points (start, abort, status, SIGUSR1), the one-run slot, [`Shutdowns`] | this file |
//! | the order: dependency levels, deadlines | [`plan`] |
//! | running the phases: assess, preserve, drain, stop, verify, rollback | `phases/` |
//! | one step = checkpoint + event + audit entry | `phases/steps.rs` |
//! | what a NOT STOPPED service keeps up | `phases/hold.rs` |
//! | checkpoints in the catalog | [`checkpoints`] |
//! | reading them back after drd was restarted | `record` |
//! | past runs, newest first, for `drctl shutdowns` | [`history`] |
//! | acting on services: Docker, compose, systemd, processes | [`drivers`] |
//!
//! At most one shutdown runs at a time: the [`ShutdownSlot`] in [`Shutdowns`] holds it.
//! The coordinator is a task on the daemon's tracker, so a daemon that is stopping
//! (SIGTERM) waits for it: it finishes the step under way, checkpoints it and leaves
//! the run interrupted, to be resumed or aborted by the next drd.

pub mod checkpoints;
pub mod drivers;
pub mod history;
mod phases;
pub mod plan;
mod record;
mod recover;

pub use recover::{recover, recovery_plan, Firing, RecoverRequest};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use drd_proto::{
    AbortReport, ErrorKind, ErrorReply, Event, RecoveryReport, RunKind, RunState, ShutdownPlan,
    ShutdownReport, ShutdownStatus, ShutdownTrigger,
};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use drd_backup::Backups;
use drd_core::audit::{Actor, Outcome};
use drd_core::catalog::CatalogError;
use drd_core::config::Config;
use drd_core::Core;
use plan::{Plan, PlanError};
use record::Record;

/// What `drctl shutdown` asks for.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Why.
    pub trigger: ShutdownTrigger,
    /// Skip preserve and drain; short grace.
    pub force: bool,
    /// Only these services and their dependants.
    pub only: Vec<String>,
    /// Words for the audit log.
    pub reason: Option<String>,
    /// Carry on with an interrupted run.
    pub resume: bool,
}

/// Why a shutdown (or an abort) could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A shutdown runs already.
    #[error("shutdown #{0} is already running; follow it with `drctl status` or stop it with `drctl abort`")]
    Busy(i64),
    /// The previous run was interrupted and must be resumed or aborted first.
    #[error("{kind} #{run_id} ({trigger}) was interrupted when drd died or was stopped, at {at}; {}", next_step(*kind))]
    Interrupted {
        /// Shutdown or recovery.
        kind: RunKind,
        /// The interrupted run.
        run_id: i64,
        /// Its trigger.
        trigger: ShutdownTrigger,
        /// Its last step.
        at: String,
    },
    /// Nothing to resume or abort.
    #[error("{0}")]
    Nothing(&'static str),
    /// The interrupted run was being rolled back: it can only be aborted.
    #[error("shutdown #{0} was being rolled back when drd died; finish the rollback with `drctl abort` (or `drctl abort --no-rollback` to leave things as they are)")]
    RollingBack(i64),
    /// No plan could be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl StartError {
    /// The error for a new run while `run` is interrupted.
    async fn interrupted(
        catalog: &drd_core::catalog::Catalog,
        run: checkpoints::RunRow,
    ) -> StartError {
        match checkpoints::last_step(catalog, run.id).await {
            Ok(at) => StartError::Interrupted {
                kind: run.kind,
                run_id: run.id,
                at,
                trigger: run.trigger,
            },
            Err(err) => StartError::Catalog(err),
        }
    }

    /// The error as a reply, with the kind drctl maps to its exit code.
    pub fn reply(&self) -> ErrorReply {
        let kind = match self {
            StartError::Busy(_) | StartError::Interrupted { .. } | StartError::RollingBack(_) => {
                ErrorKind::Busy
            }
            StartError::Nothing(_) | StartError::Plan(PlanError::UnknownService(_)) => {
                ErrorKind::NotFound
            }
            StartError::Plan(PlanError::NoServices) => ErrorKind::Failed,
            StartError::Catalog(_) => ErrorKind::Internal,
        };
        ErrorReply {
            kind,
            message: self.to_string(),
        }
    }
}

/// What to do with an interrupted run of `kind`.
pub fn next_step(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Shutdown => {
            "carry on with `drctl shutdown --resume` or roll back with `drctl abort`"
        }
        RunKind::Recovery => {
            "carry on with `drctl recover --resume` or end it with `drctl abort` (what it started keeps running)"
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Finished {
    /// A shutdown: its report, and the abort's report if it was aborted.
    Shutdown {
        /// The shutdown's report.
        report: ShutdownReport,
        /// Set when the run was aborted.
        abort: Option<AbortReport>,
    },
    /// A recovery, however it ended (an aborted one says so in its outcome).
    Recovery(RecoveryReport),
}

/// The shutdown that runs now.
struct Active {
    run_id: i64,
    kind: RunKind,
    abort: CancellationToken,
    rollback: Arc<AtomicBool>,
    events: broadcast::Sender<Event>,
    finished: watch::Receiver<Option<Finished>>,
}

/// The daemon's one shutdown slot: the run that holds it, if any. [`Shutdowns`] owns it.
#[derive(Default)]
pub struct ShutdownSlot(tokio::sync::Mutex<Option<Arc<Active>>>);

/// What the shutdown layer keeps for the daemon's life, behind an `Arc`: every entry
/// point takes it.
pub struct Shutdowns {
    /// The daemon's config, catalog, audit log, workers and stop token.
    pub core: Arc<Core>,
    /// The backup layer, for the preserve phase's backups.
    pub backups: Arc<Backups>,
    /// The shutdown that runs now, if any (one at a time).
    pub slot: ShutdownSlot,
    /// The newest run launched, as `(kind, run id)`: work that must yield to any
    /// shutdown (a drill) compares it, so even a run that ended between two looks is
    /// seen.
    last_launched: std::sync::Mutex<Option<(RunKind, i64)>>,
}

impl Shutdowns {
    /// The shutdown layer of a daemon running on `core` and `backups`.
    pub fn new(core: Arc<Core>, backups: Arc<Backups>) -> Shutdowns {
        Shutdowns {
            core,
            backups,
            slot: ShutdownSlot::default(),
            last_launched: std::sync::Mutex::default(),
        }
    }

    /// The newest shutdown or recovery launched since drd started, as `(kind, run id)`.
    pub fn last_launched(&self) -> Option<(RunKind, i64)> {
        *self
            .last_launched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The shutdown or recovery under way, as `(kind, run id)`, without waiting:
    /// `None` also while someone briefly holds the slot to read it, so a caller that
    /// polls (the drills) sees a run at its next look.
    pub fn running(&self) -> Option<(RunKind, i64)> {
        let slot = self.slot.0.try_lock().ok()?;
        slot.as_ref().map(|active| (active.kind, active.run_id))
    }
}

/// A client's view of a running shutdown: its events, then how it ended.
pub struct Following {
    /// The run's id.
    pub run_id: i64,
    /// Shutdown or recovery.
    pub kind: RunKind,
    /// Every event from now on.
    pub events: broadcast::Receiver<Event>,
    finished: watch::Receiver<Option<Finished>>,
}

impl Following {
    fn of(active: &Active) -> Following {
        Following {
            run_id: active.run_id,
            kind: active.kind,
            events: active.events.subscribe(),
            finished: active.finished.clone(),
        }
    }

    /// Resolves once the run has ended, or its task died; it borrows nothing, so a
    /// caller can wait for it while it reads [`Following::events`]. The report itself
    /// stays for [`Following::finished`].
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut done = self.finished.clone();
        async move {
            let _ = done.wait_for(Option::is_some).await;
        }
    }

    /// Waits for the run to end. `None` if its task died without saying (a panic).
    pub async fn finished(&mut self) -> Option<Finished> {
        match self.finished.wait_for(Option::is_some).await {
            Ok(done) => done.clone(),
            Err(_) => None,
        }
    }
}

/// The plan for a dry run: nothing is touched.
pub async fn dry_run(
    config: &Config,
    only: &[String],
    force: bool,
) -> Result<ShutdownPlan, PlanError> {
    let config = expanded(config).await;
    Plan::build(&config, only, force).map(|plan| plan.to_wire())
}

/// `config` with compose projects turned into their containers (see
/// [`drivers::compose`]); what could not be discovered is logged.
async fn expanded(config: &Config) -> Config {
    let (config, problems) = drivers::compose::expand(config).await;
    for problem in problems {
        tracing::warn!(cause = %problem, "compose discovery");
    }
    config
}

/// Starts (or with `resume`, carries on) a shutdown in its own task.
pub async fn start(
    shared: &Arc<Shutdowns>,
    request: StartRequest,
    actor: Actor,
) -> Result<Following, StartError> {
    let mut slot = shared.slot.0.lock().await;
    if let Some(active) = slot.as_ref() {
        return Err(StartError::Busy(active.run_id));
    }
    let catalog = &shared.core.catalog;
    let unfinished = checkpoints::unfinished_run(catalog).await?;
    let config = expanded(&shared.core.config().config).await;
    let (run_id, trigger, force, only, earlier) = match (request.resume, unfinished) {
        (true, None) => {
            return Err(StartError::Nothing(
                "no interrupted shutdown to resume; `drctl status` shows the last one",
            ))
        }
        (false, Some(run)) => return Err(StartError::interrupted(catalog, run).await),
        (true, Some(run)) if run.kind != RunKind::Shutdown => {
            return Err(StartError::interrupted(catalog, run).await)
        }
        (true, Some(run)) => {
            let earlier = Record::read(&checkpoints::steps(catalog, run.id).await?);
            if earlier.rolling_back() {
                return Err(StartError::RollingBack(run.id));
            }
            // Plan first: a config that no longer plans is refused before anything.
            Plan::build(&config, &run.only, run.force)?;
            shared
                .core
                .audit(
                    &actor,
                    "resume shutdown",
                    Outcome::Ok,
                    format!(
                        "shutdown #{} ({}) resumed at {}",
                        run.id,
                        run.trigger,
                        checkpoints::last_step(catalog, run.id).await?
                    ),
                )
                .await;
            (run.id, run.trigger, run.force, run.only, earlier)
        }
        (false, None) => {
            Plan::build(&config, &request.only, request.force)?;
            let reason = request.reason.clone().unwrap_or_default();
            let run_id = checkpoints::begin_run(
                catalog,
                request.trigger,
                &actor.to_string(),
                &reason,
                request.force,
                &request.only,
            )
            .await?;
            shared
                .core
                .audit(
                    &actor,
                    "emergency shutdown",
                    Outcome::Ok,
                    format!(
                        "shutdown #{run_id} triggered: {}{}{}{}",
                        request.trigger,
                        if request.force { ", forced" } else { "" },
                        if request.only.is_empty() {
                            String::new()
                        } else {
                            format!(", only {}", request.only.join(" "))
                        },
                        if reason.is_empty() {
                            String::new()
                        } else {
                            format!(": {reason}")
                        }
                    ),
                )
                .await;
            (
                run_id,
                request.trigger,
                request.force,
                request.only,
                Record::default(),
            )
        }
    };
    let spec = RunSpec {
        run_id,
        trigger,
        plan: Plan::build(&config, &only, force)?,
        actor,
        earlier,
        abort_now: None,
        recovery: None,
    };
    Ok(launch(shared, &mut slot, spec))
}

/// Stops the running shutdown at its next safe point, or, when drd died during one,
/// takes the interrupted run over; with `rollback`, starts again what it stopped.
/// Follow the result: its `abort` report is set.
pub async fn abort(
    shared: &Arc<Shutdowns>,
    rollback: bool,
    actor: Actor,
) -> Result<Following, StartError> {
    let mut slot = shared.slot.0.lock().await;
    if let Some(active) = slot.as_ref() {
        active.rollback.store(rollback, Ordering::SeqCst);
        active.abort.cancel();
        shared
            .core
            .audit(
                &actor,
                &format!("abort {}", active.kind),
                Outcome::Ok,
                format!(
                    "{} #{} asked to stop at its next safe point{}",
                    active.kind,
                    active.run_id,
                    if active.kind == RunKind::Recovery {
                        " (what it started keeps running)"
                    } else if rollback {
                        " and roll back"
                    } else {
                        " (no rollback)"
                    }
                ),
            )
            .await;
        return Ok(Following::of(active));
    }
    let catalog = &shared.core.catalog;
    let Some(run) = checkpoints::unfinished_run(catalog).await? else {
        return Err(StartError::Nothing(
            "no shutdown is running or interrupted; nothing to abort",
        ));
    };
    let earlier = Record::read(&checkpoints::steps(catalog, run.id).await?);
    let config = expanded(&shared.core.config().config).await;
    let plan = Plan::build(&config, &run.only, run.force)?;
    let recovery = match run.kind {
        RunKind::Shutdown => None,
        RunKind::Recovery => Some(recover::interrupted(shared, &run).await?),
    };
    shared
        .core
        .audit(
            &actor,
            &format!("abort {}", run.kind),
            Outcome::Ok,
            format!(
                "interrupted {} #{} aborted at {}{}",
                run.kind,
                run.id,
                checkpoints::last_step(catalog, run.id).await?,
                if run.kind == RunKind::Recovery {
                    " (what it started keeps running)"
                } else if rollback {
                    "; rolling back"
                } else {
                    " (no rollback)"
                }
            ),
        )
        .await;
    let spec = RunSpec {
        run_id: run.id,
        trigger: run.trigger,
        plan,
        actor,
        earlier,
        abort_now: Some(rollback),
        recovery,
    };
    Ok(launch(shared, &mut slot, spec))
}

/// What a coordinator is started on.
struct RunSpec {
    run_id: i64,
    trigger: ShutdownTrigger,
    plan: Plan,
    actor: Actor,
    /// What the drd that died recorded of this run (empty for a new run).
    earlier: Record,
    /// Takes an interrupted run straight to its abort (with rollback if `Some(true)`).
    abort_now: Option<bool>,
    /// Set for a recovery: what it recovers from and how.
    recovery: Option<recover::RecoverySpec>,
}

/// Fills the slot and runs the coordinator in a task on the daemon's tracker, so a
/// stopping daemon waits for the step under way. The caller is subscribed before the
/// run starts, so it sees every event.
fn launch(shared: &Arc<Shutdowns>, slot: &mut Option<Arc<Active>>, spec: RunSpec) -> Following {
    let run_id = spec.run_id;
    let (events, _) = broadcast::channel(4096);
    let (done_tx, done_rx) = watch::channel(None);
    let abort = CancellationToken::new();
    let rollback = Arc::new(AtomicBool::new(spec.abort_now.unwrap_or(false)));
    if spec.abort_now.is_some() {
        abort.cancel();
    }
    let active = Arc::new(Active {
        run_id,
        kind: if spec.recovery.is_some() {
            RunKind::Recovery
        } else {
            RunKind::Shutdown
        },
        abort: abort.clone(),
        rollback: rollback.clone(),
        events: events.clone(),
        finished: done_rx,
    });
    *slot = Some(active.clone());
    *shared
        .last_launched
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((active.kind, run_id));
    let following = Following::of(&active);
    let run = phases::Run::new(
        shared.clone(),
        spec,
        phases::Controls {
            events,
            abort,
            rollback,
        },
    );
    let slot_owner = shared.clone();
    shared.core.workers.spawn_task(async move {
        // In a task of its own, so that a panic still frees the slot (and the
        // followers see the run end without a report instead of waiting forever).
        let result = tokio::spawn(run.execute()).await;
        let mut slot = slot_owner.slot.0.lock().await;
        if slot.as_ref().is_some_and(|a| a.run_id == run_id) {
            *slot = None;
        }
        drop(slot);
        match result {
            Ok(Some(finished)) => {
                let _ = done_tx.send(Some(finished));
            }
            // drd is stopping: the run stays interrupted; followers are told so.
            Ok(None) => {}
            Err(err) => tracing::error!(cause = %err, run_id, "the shutdown coordinator failed"),
        }
    });
    following
}

/// The shutdown `drctl status` should mention: the running one, or an interrupted one.
pub async fn status(shared: &Shutdowns) -> Option<ShutdownStatus> {
    let running = shared.slot.0.lock().await.as_ref().map(|a| a.run_id);
    let run = match checkpoints::unfinished_run(&shared.core.catalog).await {
        Ok(run) => run?,
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read shutdown checkpoints for status");
            return None;
        }
    };
    let last_step = checkpoints::last_step(&shared.core.catalog, run.id)
        .await
        .unwrap_or_default();
    Some(ShutdownStatus {
        run_id: run.id,
        kind: run.kind,
        trigger: run.trigger,
        started_unix_ms: run.started_ms,
        state: if running == Some(run.id) {
            RunState::Running
        } else {
            RunState::Interrupted
        },
        last_step,
    })
}

/// SIGUSR1: `shutdown --trigger manual` with the signal as the actor. A refusal (a
/// shutdown already running, nothing configured) is audited.
pub async fn on_sigusr1(shared: &Arc<Shutdowns>) {
    let actor = Actor::Signal("SIGUSR1");
    let request = StartRequest {
        trigger: ShutdownTrigger::Manual,
        force: false,
        only: Vec::new(),
        reason: Some("SIGUSR1 sent to drd".to_owned()),
        resume: false,
    };
    if let Err(err) = start(shared, request, actor.clone()).await {
        shared
            .core
            .audit(
                &actor,
                "emergency shutdown",
                Outcome::Refused,
                err.to_string(),
            )
            .await;
    }
}
