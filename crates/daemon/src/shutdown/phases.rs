//! The coordinator proper: one shutdown run through its phases (assess, preserve,
//! drain, stop, verify, done), and after an abort its rollback.
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drd_proto::{
    AbortReport, Event, Progress, ServiceResult, ShutdownEvent, ShutdownOutcome, ShutdownPhase,
    ShutdownReport, ShutdownTrigger,
};
use futures::future::join_all;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::checkpoints::{self, StepRow};
use super::drivers::{self, Assessment, Driver, Stopped};
use super::plan::Plan;
use super::Finished;
use crate::audit::{Actor, Outcome};
use crate::jobs::{self, Trigger};
use crate::state::Shared;

/// How often systemd is told to wait longer while a shutdown runs, and by how much.
const EXTEND_EVERY: Duration = Duration::from_secs(5);
const EXTEND_BY: Duration = Duration::from_secs(30);

/// A rollback waits at least this long for a service to come back.
const MIN_START_WAIT: Duration = Duration::from_secs(30);

/// One service during a run.
struct Svc {
    driver: Result<Driver, String>,
    /// Its state before the shutdown touched it (from an earlier drd when resumed).
    before: Assessment,
    /// Whether it runs now (as of the last look).
    running: bool,
    /// A stop was begun on it, by this run or by the drd that died.
    touched: bool,
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
    earlier: Vec<StepRow>,
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
        earlier: Vec<StepRow>,
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
            earlier,
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
        self.end(outcome).await;
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
        self.earlier
            .iter()
            .any(|s| s.phase == phase.as_str() && s.subject == subject && s.state == "done")
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
            let earlier: Option<Assessment> = self
                .earlier
                .iter()
                .find(|s| s.phase == "assess" && s.subject == *name && s.state == "done")
                .and_then(|s| s.record.as_deref())
                .and_then(|r| serde_json::from_str(r).ok());
            let touched = self
                .earlier
                .iter()
                .any(|s| s.phase == "stop" && s.subject == *name);
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
                    touched,
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
                &self.shared,
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

    /// Stops one level's services in parallel.
    async fn stop_level(&mut self, level: usize) {
        let names = self.plan.levels[level].clone();
        self.at = format!("stop level {level}");
        let mut to_stop = Vec::new();
        for name in &names {
            let svc = &self.services[name];
            let (state, detail) = if let Some(why) = &svc.held {
                ("held", why.clone())
            } else if let Err(err) = &svc.driver {
                ("NOT STOPPED", err.clone())
            } else if !svc.running {
                if svc.touched {
                    ("stopped", "stopped before drd was restarted".to_owned())
                } else {
                    ("not running", svc.result.detail.clone())
                }
            } else {
                to_stop.push(name.clone());
                continue;
            };
            self.emit(ShutdownPhase::Stop, Some(name), state, detail.clone());
            let svc = self.services.get_mut(name).expect("planned service");
            svc.result.state = state.to_owned();
            svc.result.detail = detail;
        }
        // A driver that cannot even be built: report it and hold what it needs.
        for name in &names {
            let svc = &self.services[name];
            if svc.result.state == "NOT STOPPED" && svc.held.is_none() {
                let detail = svc.result.detail.clone();
                self.problems
                    .push(format!("{name} was not stopped: {detail}"));
                let deps = self.plan.steps[name].depends_on.clone();
                for dep in deps {
                    self.hold(
                        &dep,
                        &format!("kept running: {name}, which depends on it, is still up"),
                    );
                }
            }
        }
        if to_stop.is_empty() {
            return;
        }
        let ids = self.begin(ShutdownPhase::Stop, to_stop.clone()).await;
        // Signalled by the drd that died (a resumed run): wait, do not signal again.
        let signalled: BTreeSet<String> = to_stop
            .iter()
            .filter(|n| self.services[*n].touched)
            .cloned()
            .collect();
        for name in &to_stop {
            if let Some(svc) = self.services.get_mut(name) {
                svc.touched = true;
            }
        }
        let signalled = &signalled;
        let this = &*self;
        let results = join_all(to_stop.iter().zip(&ids).map(|(name, id)| async move {
            let step = &this.plan.steps[name];
            let svc = &this.services[name];
            let signal = step.config.stop_signal().to_owned();
            this.emit(
                ShutdownPhase::Stop,
                Some(name),
                "stopping",
                format!(
                    "{signal}, killed after {}",
                    humantime::format_duration(step.timeout)
                ),
            );
            let t0 = Instant::now();
            let result = match &svc.driver {
                Ok(driver) => driver
                    .stop(&svc.before, &signal, step.timeout, signalled.contains(name))
                    .await
                    .map_err(|e| e.to_string()),
                Err(err) => Err(err.clone()),
            };
            let took = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (state, detail, outcome) = match &result {
                Ok(Stopped::Clean) => (
                    "stopped",
                    format!("after {signal} in {took} ms"),
                    Outcome::Ok,
                ),
                Ok(Stopped::Killed) => (
                    "killed",
                    format!(
                        "did not stop within {} of {signal}; killed ({took} ms in all)",
                        humantime::format_duration(step.timeout)
                    ),
                    Outcome::Ok,
                ),
                Ok(Stopped::WasNotRunning) => {
                    ("not running", "already gone".to_owned(), Outcome::Ok)
                }
                Err(err) => ("NOT STOPPED", err.clone(), Outcome::Failed),
            };
            let checkpoint_state = if result.is_ok() { "done" } else { "failed" };
            this.end_step(*id, checkpoint_state, detail.clone(), None)
                .await;
            this.emit(ShutdownPhase::Stop, Some(name), state, detail.clone());
            this.audit(
                &format!("stop {name}"),
                outcome,
                format!("{state}: {detail}"),
            )
            .await;
            (name.clone(), state, detail, took)
        }))
        .await;
        for (name, state, detail, took) in results {
            if state == "NOT STOPPED" {
                self.problems
                    .push(format!("{name} was not stopped: {detail}"));
                let deps = self.plan.steps[&name].depends_on.clone();
                for dep in deps {
                    self.hold(
                        &dep,
                        &format!("kept running: {name}, which depends on it, is still up"),
                    );
                }
            }
            let svc = self.services.get_mut(&name).expect("planned service");
            svc.running = state == "NOT STOPPED";
            svc.result.state = state.to_owned();
            svc.result.detail = detail;
            svc.result.took_ms = Some(took);
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

    /// Records the outcome: checkpoint, run row, event, audit.
    async fn end(&mut self, outcome: ShutdownOutcome) {
        let detail = format!(
            "{} in {} ms{}",
            outcome.as_str(),
            self.elapsed_ms(),
            if self.problems.is_empty() {
                String::new()
            } else {
                format!("; problems: {}", self.problems.join("; "))
            }
        );
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
            if outcome == ShutdownOutcome::Completed {
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

    /// Stops here; with rollback, starts again what this run (or the drd that died)
    /// stopped.
    async fn abort_now(&mut self) -> Finished {
        if self.services.is_empty() {
            // Aborted before assessing (an interrupted run taken over by abort).
            self.assess().await;
        }
        let rollback = self.rollback.load(Ordering::SeqCst);
        let stopped_at = self.at.clone();
        self.emit(
            ShutdownPhase::Done,
            None,
            "aborted",
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
        let outcome = if rollback {
            self.phase(ShutdownPhase::Rollback).await;
            self.rollback_services(&mut abort).await;
            ShutdownOutcome::RolledBack
        } else {
            ShutdownOutcome::Halted
        };
        self.end(outcome).await;
        Finished {
            report: self.report(outcome),
            abort: Some(abort),
        }
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
                let deps = &self.plan.steps[&name].depends_on;
                if let Some(dep) = deps.iter().find(|d| failed.contains(*d)) {
                    let why = format!("not started: {dep}, which it depends on, did not start");
                    abort.problems.push(format!("{name}: {why}"));
                    self.emit(ShutdownPhase::Rollback, Some(&name), "NOT STARTED", why);
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
                this.emit(
                    ShutdownPhase::Rollback,
                    Some(name),
                    "starting",
                    String::new(),
                );
                let t0 = Instant::now();
                let wait = step.config.stop_timeout().max(MIN_START_WAIT);
                let mut result = match &svc.driver {
                    Ok(driver) => driver
                        .start(&svc.before, wait)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(err) => Err(err.clone()),
                };
                if result.is_ok() {
                    if let Some(hook) = &step.config.health {
                        this.emit(
                            ShutdownPhase::Rollback,
                            Some(name),
                            "waiting for health",
                            hook.run.join(" "),
                        );
                        result = drivers::wait_healthy(hook).await;
                    }
                }
                let took = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
                let (state, detail) = match &result {
                    Ok(()) => ("started", format!("in {took} ms")),
                    Err(err) => ("NOT STARTED", err.clone()),
                };
                this.end_step(
                    *id,
                    if result.is_ok() { "done" } else { "failed" },
                    detail.clone(),
                    None,
                )
                .await;
                this.emit(ShutdownPhase::Rollback, Some(name), state, detail.clone());
                this.audit(
                    &format!("rollback start {name}"),
                    if result.is_ok() {
                        Outcome::Ok
                    } else {
                        Outcome::Failed
                    },
                    detail.clone(),
                )
                .await;
                ServiceResult {
                    name: name.clone(),
                    level: u32::try_from(step.level).unwrap_or(u32::MAX),
                    state: state.to_owned(),
                    took_ms: Some(took),
                    detail,
                }
            }))
            .await;
            for result in results {
                if result.state != "started" {
                    abort
                        .problems
                        .push(format!("{}: {}", result.name, result.detail));
                    failed.insert(result.name.clone());
                }
                if let Some(svc) = self.services.get_mut(&result.name) {
                    svc.running = result.state == "started";
                    svc.result = result.clone();
                }
                abort.started.push(result);
            }
        }
    }
}
