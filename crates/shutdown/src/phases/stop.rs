//! The stop phase: one level's services stopped in parallel, each signalled, waited
//! for and killed after its timeout. A service the drd that died had already
//! signalled is waited for and not signalled again, both when the run is resumed and
//! when it is aborted (see [`Run::finish_in_flight`]).

use std::collections::BTreeSet;
use std::time::Instant;

use drd_proto::{EventState, ServiceState, ShutdownPhase};
use futures::future::join_all;

use super::steps::Step;
use super::Run;
use crate::drivers::Stopped;

impl Run {
    /// Stops one level's services in parallel.
    pub(super) async fn stop_level(&mut self, level: usize) {
        let names = self.plan.levels[level].clone();
        self.at = format!("stop level {level}");
        let mut to_stop = Vec::new();
        for name in &names {
            let svc = &self.services[name];
            let (state, detail) = if let Some(why) = self.holds.why(name) {
                (ServiceState::Held, why.to_owned())
            } else if let Err(err) = &svc.driver {
                (ServiceState::NotStopped, err.clone())
            } else if !svc.running {
                if svc.in_flight {
                    self.stopped_while_down(name).await;
                    continue;
                }
                if svc.touched {
                    (
                        ServiceState::Stopped,
                        "stopped before drd was restarted".to_owned(),
                    )
                } else {
                    (ServiceState::NotRunning, svc.result.detail.clone())
                }
            } else {
                to_stop.push(name.clone());
                continue;
            };
            self.emit(ShutdownPhase::Stop, Some(name), state, detail.clone());
            if let Some(svc) = self.services.get_mut(name) {
                svc.result.state = state;
                svc.result.detail = detail;
            }
        }
        // A driver that cannot even be built: report it and hold what it needs.
        for name in &names {
            let svc = &self.services[name];
            if svc.result.state == ServiceState::NotStopped && self.holds.why(name).is_none() {
                let detail = svc.result.detail.clone();
                self.not_stopped(name, &detail);
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
        let stopped = ServiceState::Stopped;
        let step = Step::new(
            ShutdownPhase::Stop,
            Some(name),
            stopped,
            true,
            detail.clone(),
        );
        self.ended(id, step).await;
        if let Some(svc) = self.services.get_mut(name) {
            svc.in_flight = false;
            svc.result.state = stopped;
            svc.result.detail = detail;
        }
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
                EventState::Stopping,
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
            let (state, detail) = match &result {
                Ok(Stopped::Clean) => (
                    ServiceState::Stopped,
                    format!("after {signal} in {took} ms"),
                ),
                Ok(Stopped::Killed) => (
                    ServiceState::Killed,
                    format!(
                        "did not stop within {} of {signal}; killed ({took} ms in all)",
                        humantime::format_duration(step.timeout)
                    ),
                ),
                Ok(Stopped::WasNotRunning) => (ServiceState::NotRunning, "already gone".to_owned()),
                Err(err) => (ServiceState::NotStopped, err.clone()),
            };
            let audit = format!("{state}: {detail}");
            let step = Step::new(ShutdownPhase::Stop, Some(name), state, result.is_ok(), detail.clone());
            this.ended(*id, step.audited_saying(format!("stop {name}"), audit))
                .await;
            (name.clone(), state, detail, took)
        }))
        .await;
        for (name, state, detail, took) in results {
            if state == ServiceState::NotStopped {
                self.not_stopped(&name, &detail);
            }
            if let Some(svc) = self.services.get_mut(&name) {
                svc.in_flight = false;
                svc.running = state == ServiceState::NotStopped;
                svc.result.state = state;
                svc.result.detail = detail;
                svc.result.took_ms = Some(took);
            }
        }
    }
}
