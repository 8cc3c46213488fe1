//! The coordinator proper: one shutdown run through its phases (assess, preserve,
//! drain, stop, verify, done); [`stop`] stops a level, [`rollback`] handles an abort.
//!
//! Every step is checkpointed before and after it runs, streamed as an event and
//! audited. Safe points, where an abort takes effect, are between steps: before
//! each preserve job (a running job is cancelled, since nothing has stopped yet),
//! before each drain hook and before each stop level. A level that has been
//! signalled is always waited for, so no service is left half-stopped.
//!
//! "Safely" when a service does not stop: its dependencies are held running (a
//! dependant that is still up may still write to them), and so are the dependencies
//! of a critical service whose preserve job failed. Everything else goes on.
//!
//! A run carried on after drd died (resumed, or taken over by an abort) starts from
//! the [`Record`] the dead drd left, read once in [`super::record`].

mod rollback;
mod stop;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drd_proto::{
    Event, Progress, ServiceResult, ShutdownEvent, ShutdownOutcome, ShutdownPhase, ShutdownReport,
    ShutdownTrigger,
};
use futures::future::join_all;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::checkpoints;
use super::drivers::{self, Assessment, Driver};
use super::plan::Plan;
use super::record::{Record, StopMark};
use super::Finished;
use crate::audit::{Actor, Outcome};
use crate::jobs::{self, Trigger};
use crate::state::Shared;

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
    /// Why it is kept running.
    held: Option<String>,
    result: ServiceResult,
}

/// One shutdown run.
pub(super) struct Run {
    shared: Arc<Shared>,
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
    problems: Vec<String>,
    /// The phase and step it was in when last seen, for the abort report.
    at: String,
}

impl Run {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        shared: Arc<Shared>,
        run_id: i64,
        trigger: ShutdownTrigger,
        plan: Plan,
        actor: Actor,
        events: broadcast::Sender<Event>,
        abort: CancellationToken,
        rollback: Arc<AtomicBool>,
        record: Record,
        takeover: bool,
    ) -> Run {
        Run {
            shared,
            run_id,
            trigger,
            plan,
            actor,
            events,
            abort,
            rollback,
            record,
            takeover,
            started: Instant::now(),
            services: BTreeMap::new(),
            problems: Vec::new(),
            at: "assess".to_owned(),
        }
    }

    /// Runs the shutdown to its end, or to its abort and rollback.
    pub(super) async fn execute(mut self) -> Finished {
        let extend = tokio::spawn(async {
            loop {
                crate::systemd::extend_timeout(EXTEND_BY);
                tokio::time::sleep(EXTEND_EVERY).await;
            }
        });
        crate::systemd::status(&format!("emergency shutdown #{} running", self.run_id));
        let finished = self.phases().await;
        extend.abort();
        crate::systemd::status(&format!(
            "serving; emergency shutdown #{} {}",
            self.run_id,
            finished.report.outcome.as_str()
        ));
        finished
    }

    async fn phases(&mut self) -> Finished {
        self.phase(ShutdownPhase::Assess).await;
        self.assess().await;
        if !self.plan.force {
            if self.aborted() {
                return self.abort_now().await;
            }
            self.phase(ShutdownPhase::Preserve).await;
            self.preserve().await;
            if self.aborted() {
                return self.abort_now().await;
            }
            self.phase(ShutdownPhase::Drain).await;
            if self.drain().await.is_err() {
                return self.abort_now().await;
            }
        }
        if self.aborted() {
            return self.abort_now().await;
        }
        self.phase(ShutdownPhase::Stop).await;
        for level in 0..self.plan.levels.len() {
            if self.aborted() {
                return self.abort_now().await;
            }
            self.stop_level(level).await;
        }
        self.phase(ShutdownPhase::Verify).await;
        self.verify().await;
        let outcome = if self.problems.is_empty() {
            ShutdownOutcome::Completed
        } else {
            ShutdownOutcome::Incomplete
        };
        self.end(outcome, &[]).await;
        Finished {
            report: self.report(outcome),
            abort: None,
        }
    }

    fn aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn emit(&self, phase: ShutdownPhase, subject: Option<&str>, state: &str, detail: String) {
        let _ = self.events.send(Event::Shutdown(ShutdownEvent {
            run_id: self.run_id,
            elapsed_ms: self.elapsed_ms(),
            phase,
            subject: subject.map(str::to_owned),
            state: state.to_owned(),
            detail,
        }));
    }

    async fn audit(&self, action: &str, outcome: Outcome, detail: String) {
        self.shared
            .audit(
                &self.actor,
                &format!("shutdown #{} {action}", self.run_id),
                outcome,
                detail,
            )
            .await;
    }

    /// Announces a phase: event, checkpoint, audit.
    async fn phase(&mut self, phase: ShutdownPhase) {
        self.at = phase.as_str().to_owned();
        self.emit(phase, None, "started", String::new());
        self.checkpoint(phase, String::new(), "done", String::new(), None)
            .await;
        self.audit(
            &format!("phase {phase}"),
            Outcome::Ok,
            format!("{} ms in", self.elapsed_ms()),
        )
        .await;
    }

    /// Records a step that is over as soon as it begins (a phase boundary).
    async fn checkpoint(
        &self,
        phase: ShutdownPhase,
        subject: String,
        state: &'static str,
        detail: String,
        record: Option<String>,
    ) {
        let catalog = &self.shared.catalog;
        match checkpoints::begin_steps(catalog, self.run_id, phase.as_str(), vec![subject]).await {
            Ok(ids) => {
                for id in ids {
                    self.end_step(id, state, detail.clone(), record.clone())
                        .await;
                }
            }
            Err(err) => tracing::error!(cause = %err, "cannot write a shutdown checkpoint"),
        }
    }

    /// Records steps as started; ids are 0 where the catalog failed (logged).
    async fn begin(&self, phase: ShutdownPhase, subjects: Vec<String>) -> Vec<i64> {
        let n = subjects.len();
        checkpoints::begin_steps(&self.shared.catalog, self.run_id, phase.as_str(), subjects)
            .await
            .unwrap_or_else(|err| {
                tracing::error!(cause = %err, "cannot write a shutdown checkpoint");
                vec![0; n]
            })
    }

    async fn end_step(&self, id: i64, state: &'static str, detail: String, record: Option<String>) {
        if id == 0 {
            return;
        }
        if let Err(err) =
            checkpoints::end_step(&self.shared.catalog, id, state, detail, record).await
        {
            tracing::error!(cause = %err, "cannot write a shutdown checkpoint");
        }
    }

    /// Whether the drd that died already finished `phase` / `subject`.
    fn done_earlier(&self, phase: ShutdownPhase, subject: &str) -> bool {
        self.record.done(phase, subject)
    }

    /// The state of every planned service; the first assessment of a resumed run is
    /// kept, since that is what a rollback must restore.
    async fn assess(&mut self) {
        let names: Vec<String> = self.plan.levels.iter().flatten().cloned().collect();
        let ids = self.begin(ShutdownPhase::Assess, names.clone()).await;
        let looks = join_all(names.iter().map(|name| {
            let step = &self.plan.steps[name];
            async move {
                let driver = Driver::new(&step.config).map_err(|e| e.to_string());
                let now = match &driver {
                    Ok(driver) => driver.assess().await.map_err(|e| e.to_string()),
                    Err(err) => Err(err.clone()),
                };
                let healthy = match (&now, &step.config.health) {
                    (Ok(a), Some(hook)) if a.running => Some(drivers::run_hook(hook).await.is_ok()),
                    _ => None,
                };
                (driver, now, healthy)
            }
        }))
        .await;
        for ((name, id), (driver, now, healthy)) in names.iter().zip(ids).zip(looks) {
            let level = u32::try_from(self.plan.steps[name].level).unwrap_or(u32::MAX);
            let earlier = self.record.before(name).cloned();
            let stop = self.record.stop(name);
            let (running, before, detail, state) = match now {
                Ok(mut now) => {
                    now.healthy = healthy;
                    let detail = format!(
                        "{}{}{}",
                        now.detail,
                        match now.healthy {
                            Some(true) => ", healthy",
                            Some(false) => ", UNHEALTHY",
                            None => "",
                        },
                        now.restart_policy
                            .as_deref()
                            .map(|p| format!(", restart policy {p}"))
                            .unwrap_or_default()
                    );
                    let state = if now.running {
                        "running"
                    } else {
                        "not running"
                    };
                    (now.running, earlier.unwrap_or(now), detail, state)
                }
                Err(err) => {
                    self.problems.push(format!("{name}: {err}"));
                    // Unknown state: treat as running so it is not forgotten.
                    let before = earlier.unwrap_or(Assessment {
                        running: true,
                        detail: err.clone(),
                        ..Assessment::default()
                    });
                    (true, before, err, "unknown")
                }
            };
            let record = serde_json::to_string(&before).ok();
            self.end_step(id, "done", detail.clone(), record).await;
            self.emit(ShutdownPhase::Assess, Some(name), state, detail.clone());
            self.services.insert(
                name.clone(),
                Svc {
                    driver,
                    before,
                    running,
                    touched: stop.is_some(),
                    in_flight: stop == Some(StopMark::InFlight),
                    start_in_flight: self.record.start_in_flight(name),
                    held: None,
                    result: ServiceResult {
                        name: name.clone(),
                        level,
                        state: state.to_owned(),
                        took_ms: None,
                        detail,
                    },
                },
            );
        }
    }

    /// Runs the preserve jobs within the preserve deadline. A failed job is a
    /// problem; for a critical service it also holds the service running.
    async fn preserve(&mut self) {
        let deadline = tokio::time::Instant::now() + self.plan.preserve_deadline;
        let jobs = self.plan.preserve.clone();
        for (job, services) in jobs {
            if self.aborted() {
                return;
            }
            let subject = format!("job {job}");
            self.at = format!("preserve {subject}");
            if self.done_earlier(ShutdownPhase::Preserve, &subject) {
                self.emit(
                    ShutdownPhase::Preserve,
                    Some(&job),
                    "done",
                    "done before drd was restarted".to_owned(),
                );
                continue;
            }
            let id = self.begin(ShutdownPhase::Preserve, vec![subject]).await[0];
            self.emit(
                ShutdownPhase::Preserve,
                Some(&job),
                "started",
                format!("backup for {}", services.join(", ")),
            );
            let t0 = Instant::now();
            let events = self.events.clone();
            let progress: jobs::RunProgress = Arc::new(move |p: Progress| {
                let _ = events.send(Event::Progress(p));
            });
            let run = jobs::run_job(
                &self.shared.backups,
                &job,
                Trigger::ShutdownPreserve,
                &self.actor,
                progress,
            );
            let result = tokio::select! {
                r = tokio::time::timeout_at(deadline, run) => match r {
                    Ok(Ok(report)) => Ok(format!("snapshot {}", report.snapshot.id)),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err(format!(
                        "the preserve deadline ({}) passed; the job was cancelled",
                        humantime::format_duration(self.plan.preserve_deadline)
                    )),
                },
                () = self.abort.cancelled() => Err("cancelled by abort".to_owned()),
            };
            let took = format!("{} ms", t0.elapsed().as_millis());
            match result {
                Ok(detail) => {
                    let detail = format!("{detail} in {took}");
                    self.end_step(id, "done", detail.clone(), None).await;
                    self.emit(ShutdownPhase::Preserve, Some(&job), "done", detail.clone());
                    self.audit(&format!("preserve {job}"), Outcome::Ok, detail)
                        .await;
                }
                Err(err) => {
                    self.end_step(id, "failed", err.clone(), None).await;
                    self.emit(ShutdownPhase::Preserve, Some(&job), "failed", err.clone());
                    self.audit(&format!("preserve {job}"), Outcome::Failed, err.clone())
                        .await;
                    if self.aborted() {
                        return;
                    }
                    self.problems
                        .push(format!("preserve job {job} failed: {err}"));
                    for service in services {
                        if self.plan.steps[&service].config.critical {
                            let why = format!(
                                "kept running: it is critical and its preserve job {job} failed"
                            );
                            self.hold(&service, &why);
                        }
                    }
                }
            }
        }
    }

    /// Runs the drain hooks, one after another. A failed hook is a problem, and the
    /// shutdown goes on: in an emergency, stopping matters more than draining.
    /// `Err` when an abort arrived.
    async fn drain(&mut self) -> Result<(), ()> {
        let hooks = self.plan.drain.clone();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for (service, hook) in hooks {
            let n = count.entry(service.clone()).or_default();
            let subject = format!("hook {service} #{n}");
            *n += 1;
            if self.aborted() {
                return Err(());
            }
            self.at = format!("drain {subject}");
            if self.done_earlier(ShutdownPhase::Drain, &subject) {
                continue;
            }
            let id = self
                .begin(ShutdownPhase::Drain, vec![subject.clone()])
                .await[0];
            self.emit(
                ShutdownPhase::Drain,
                Some(&service),
                "started",
                hook.run.join(" "),
            );
            let t0 = Instant::now();
            let result = drivers::run_hook(&hook).await;
            let took = t0.elapsed().as_millis();
            let (state, outcome, detail) = match result {
                Ok(()) => (
                    "done",
                    Outcome::Ok,
                    format!("{} in {took} ms", hook.run.join(" ")),
                ),
                Err(err) => {
                    self.problems
                        .push(format!("drain hook of {service}: {err}"));
                    ("failed", Outcome::Failed, err)
                }
            };
            self.end_step(id, state, detail.clone(), None).await;
            self.emit(ShutdownPhase::Drain, Some(&service), state, detail.clone());
            self.audit(&format!("drain {service}"), outcome, detail)
                .await;
        }
        Ok(())
    }

    /// Keeps `name` and everything it depends on running, saying why.
    fn hold(&mut self, name: &str, why: &str) {
        let mut todo = vec![(name.to_owned(), why.to_owned())];
        while let Some((name, why)) = todo.pop() {
            let Some(svc) = self.services.get_mut(&name) else {
                continue;
            };
            if svc.held.is_some() {
                continue;
            }
            svc.held = Some(why);
            let deps = self.plan.steps[&name].depends_on.clone();
            todo.extend(deps.into_iter().map(|d| {
                (
                    d,
                    format!("kept running: {name}, which depends on it, is still up"),
                )
            }));
        }
    }

    /// Checks that every service this run stopped is still down.
    async fn verify(&mut self) {
        let names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| {
                matches!(
                    s.result.state.as_str(),
                    "stopped" | "killed" | "not running"
                )
            })
            .map(|(n, _)| n.clone())
            .collect();
        let id = self
            .begin(ShutdownPhase::Verify, vec!["services".to_owned()])
            .await[0];
        let this = &*self;
        let looks = join_all(names.iter().map(|name| async move {
            let svc = &this.services[name];
            match &svc.driver {
                Ok(driver) => driver
                    .is_running(&svc.before)
                    .await
                    .map_err(|e| e.to_string()),
                Err(err) => Err(err.clone()),
            }
        }))
        .await;
        let mut up = Vec::new();
        for (name, look) in names.iter().zip(looks) {
            match look {
                Ok(false) => {}
                Ok(true) => {
                    up.push(name.clone());
                    self.problems.push(format!(
                        "{name} is running again after it was stopped (restarted by something else?)"
                    ));
                    let svc = self.services.get_mut(name).expect("planned service");
                    svc.result.state = "UP AGAIN".to_owned();
                    svc.running = true;
                }
                Err(err) => self.problems.push(format!("{name}: cannot verify: {err}")),
            }
        }
        let still_up: Vec<&String> = self
            .services
            .iter()
            .filter(|(_, s)| s.running)
            .map(|(n, _)| n)
            .collect();
        let detail = if still_up.is_empty() {
            format!("all {} planned services are down", self.services.len())
        } else {
            format!(
                "still up: {}",
                still_up
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let state = if still_up.is_empty() {
            "done"
        } else {
            "failed"
        };
        self.end_step(id, state, detail.clone(), None).await;
        self.emit(ShutdownPhase::Verify, None, state, detail.clone());
        self.audit(
            "verify",
            if still_up.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            detail,
        )
        .await;
    }

    /// Records the outcome: checkpoint, run row, event, audit. `rollback_problems`
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
        self.checkpoint(
            ShutdownPhase::Done,
            String::new(),
            "done",
            detail.clone(),
            None,
        )
        .await;
        if let Err(err) =
            checkpoints::end_run(&self.shared.catalog, self.run_id, outcome.as_str()).await
        {
            tracing::error!(cause = %err, "cannot record the shutdown's outcome");
        }
        self.emit(ShutdownPhase::Done, None, outcome.as_str(), detail.clone());
        self.audit(
            "done",
            if did_what_was_asked {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            detail,
        )
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
