//! Starting services, the other way from the stop: level by level, what others
//! depend on first, in parallel inside a level, each waited for until its health
//! check passes. A rollback (after an abort) and a recovery both start through here;
//! they differ only in which services they ask for.
//!
//! A service whose dependency did not come back is not started. A start the drd
//! that died began and never saw end is first given the time to finish, so no
//! second copy is started.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use drd_proto::{EventState, ServiceResult, ServiceState, ShutdownPhase};
use futures::future::join_all;

use super::steps::Step;
use super::{Run, Svc};
use crate::drivers;

/// A start waits at least this long for a service to come back.
const MIN_START_WAIT: Duration = Duration::from_secs(30);

/// What a start of several services came to.
#[derive(Debug, Default)]
pub(super) struct Started {
    /// One result per service it tried, in start order.
    pub results: Vec<ServiceResult>,
    /// The services it did not try, since a dependency did not come back.
    pub held: Vec<ServiceResult>,
    /// What did not come back, and why.
    pub problems: Vec<String>,
    /// Stopped at a safe point between levels (abort, or drd stopping).
    pub stopped_early: bool,
}

impl Run {
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

    /// Starts those of `wanted` that are not running, deepest dependency first, a
    /// level at a time, in `phase`. With `safe_points`, an abort or a stopping drd
    /// ends it between levels.
    pub(super) async fn start_levels(
        &mut self,
        phase: ShutdownPhase,
        wanted: &BTreeSet<String>,
        safe_points: bool,
    ) -> Started {
        let mut out = Started::default();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        for level in (0..self.plan.levels.len()).rev() {
            if safe_points && (self.aborted() || self.leaving()) {
                out.stopped_early = true;
                return out;
            }
            self.at = format!("{phase} level {level}");
            let mut to_start = Vec::new();
            for name in self.plan.levels[level].clone() {
                let svc = &self.services[&name];
                if !wanted.contains(&name) {
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
                    out.problems.push(format!("{name}: {why}"));
                    out.held.push(ServiceResult {
                        name: name.clone(),
                        level: u32::try_from(level).unwrap_or(u32::MAX),
                        state: ServiceState::NotStarted,
                        took_ms: None,
                        detail: why.clone(),
                    });
                    self.emit(phase, Some(&name), ServiceState::NotStarted, why);
                    failed.insert(name);
                    continue;
                }
                to_start.push(name);
            }
            if to_start.is_empty() {
                continue;
            }
            let ids = self.begin(phase, to_start.clone()).await;
            let this = &*self;
            let results = join_all(to_start.iter().zip(&ids).map(|(name, id)| async move {
                let step = &this.plan.steps[name];
                let svc = &this.services[name];
                let wait = step.config.stop_timeout().max(MIN_START_WAIT);
                this.emit(
                    phase,
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
                            phase,
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
                let ended = Step::new(phase, Some(name), state, result.is_ok(), detail.clone());
                this.ended(*id, ended.audited(format!("{phase} start {name}")))
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
                    out.problems
                        .push(format!("{}: {}", result.name, result.detail));
                    failed.insert(result.name.clone());
                }
                if let Some(svc) = self.services.get_mut(&result.name) {
                    svc.running = result.state == ServiceState::Started;
                    svc.result = result.clone();
                }
                out.results.push(result);
            }
        }
        out
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
