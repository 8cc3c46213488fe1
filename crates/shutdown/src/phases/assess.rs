//! The assess phase: each planned service's state before anything is touched
//! (running, pid, health, restart policy). That first look is what a rollback
//! restores, so a resumed run keeps the one the drd that died recorded.

use drd_proto::{ServiceResult, ServiceState, ShutdownPhase};
use futures::future::join_all;

use super::steps::Step;
use super::{Run, Svc};
use crate::drivers::{self, Assessment, Driver};
use crate::record::StopMark;

impl Run {
    /// The state of every planned service; the first assessment of a resumed run is
    /// kept, since that is what a rollback must restore.
    pub(super) async fn assess(&mut self) {
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
                let healthy = match &now {
                    Ok(a) if a.running => drivers::is_healthy(&step.config).await,
                    _ => None,
                };
                (driver, now, healthy)
            }
        }))
        .await;
        for ((name, id), (driver, now, healthy)) in names.iter().zip(ids).zip(looks) {
            let level = u32::try_from(self.plan.steps[name].level).unwrap_or(u32::MAX);
            let earlier = self.earlier_before(name);
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
                        ServiceState::Running
                    } else {
                        ServiceState::NotRunning
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
                    (true, before, err, ServiceState::Unknown)
                }
            };
            let record = serde_json::to_string(&before).ok();
            let step = Step::new(
                ShutdownPhase::Assess,
                Some(name),
                state,
                true,
                detail.clone(),
            );
            self.ended(id, step.with_record(record)).await;
            self.services.insert(
                name.clone(),
                Svc {
                    driver,
                    before,
                    running,
                    touched: stop.is_some(),
                    in_flight: stop == Some(StopMark::InFlight),
                    start_in_flight: self.record.start_in_flight(name),
                    result: ServiceResult {
                        name: name.clone(),
                        level,
                        state,
                        took_ms: None,
                        detail,
                    },
                },
            );
        }
    }
}
