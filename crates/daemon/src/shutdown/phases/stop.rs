//! The stop phase: one level's services stopped in parallel, each signalled, waited
//! for and killed after its timeout. A service the drd that died had already
//! signalled is waited for and not signalled again, both when the run is resumed and
//! when it is aborted (see [`Run::finish_in_flight`]).

use std::collections::BTreeSet;
use std::time::Instant;

use drd_proto::ShutdownPhase;
use futures::future::join_all;

use super::Run;
use crate::audit::Outcome;
use crate::shutdown::drivers::Stopped;

impl Run {
    /// Stops one level's services in parallel.
    pub(super) async fn stop_level(&mut self, level: usize) {
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
                if svc.in_flight {
                    self.stopped_while_down(name).await;
                    continue;
                }
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
        self.stop_services(to_stop).await;
    }

    /// After an abort: waits for the services the drd that died signalled and did
    /// not see stop, a level at a time, killing each after its timeout as the stop
    /// phase would. A rollback may start a service only once it is down, and a halt
    /// leaves nothing half-stopped.
    pub(super) async fn finish_in_flight(&mut self) {
        for level in 0..self.plan.levels.len() {
            let mut waiting = Vec::new();
            for name in self.plan.levels[level].clone() {
                let svc = &self.services[&name];
                if !svc.in_flight {
                    continue;
                }
                if svc.running {
                    waiting.push(name);
                } else {
                    self.stopped_while_down(&name).await;
                }
            }
            self.stop_services(waiting).await;
        }
    }

    /// A service the drd that died signalled has gone while no drd watched: its
    /// stop is recorded as over, so no later reader of the record waits for it.
    async fn stopped_while_down(&mut self, name: &str) {
        let detail = "stopped before drd was restarted".to_owned();
        let id = self.begin(ShutdownPhase::Stop, vec![name.to_owned()]).await[0];
        self.end_step(id, "done", detail.clone(), None).await;
        self.emit(ShutdownPhase::Stop, Some(name), "stopped", detail.clone());
        let svc = self.services.get_mut(name).expect("planned service");
        svc.in_flight = false;
        svc.result.state = "stopped".to_owned();
        svc.result.detail = detail;
    }

    /// Stops `to_stop` in parallel: checkpoint, signal (unless the drd that died
    /// did), wait, kill after the timeout, then report and audit each.
    async fn stop_services(&mut self, to_stop: Vec<String>) {
        if to_stop.is_empty() {
            return;
        }
        let ids = self.begin(ShutdownPhase::Stop, to_stop.clone()).await;
        // Signalled by the drd that died: wait, do not signal again.
        let signalled: BTreeSet<String> = to_stop
            .iter()
            .filter(|n| self.services[*n].in_flight)
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
            let timeout = humantime::format_duration(step.timeout);
            this.emit(
                ShutdownPhase::Stop,
                Some(name),
                "stopping",
                if signalled.contains(name) {
                    format!(
                        "waiting: {signal} was sent before drd was restarted; killed after {timeout}"
                    )
                } else {
                    format!("{signal}, killed after {timeout}")
                },
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
            svc.in_flight = false;
            svc.running = state == "NOT STOPPED";
            svc.result.state = state.to_owned();
            svc.result.detail = detail;
            svc.result.took_ms = Some(took);
        }
    }
}
