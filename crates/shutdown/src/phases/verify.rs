//! The verify phase: every service this run left down is looked at again, since
//! something else (a restart policy, a supervisor) may have started it.

use drd_proto::{ServiceState, ShutdownPhase};
use futures::future::join_all;

use super::steps::Step;
use super::Run;

impl Run {
    /// Checks that every service this run stopped is still down.
    pub(super) async fn verify(&mut self) {
        let names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.result.state.is_down())
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
        for (name, look) in names.iter().zip(looks) {
            match look {
                Ok(false) => {}
                Ok(true) => {
                    self.problems.push(format!(
                        "{name} is running again after it was stopped (restarted by something else?)"
                    ));
                    if let Some(svc) = self.services.get_mut(name) {
                        svc.result.state = ServiceState::UpAgain;
                        svc.running = true;
                    }
                }
                Err(err) => self.problems.push(format!("{name}: cannot verify: {err}")),
            }
        }
        let still_up: Vec<&str> = self
            .services
            .iter()
            .filter(|(_, s)| s.running)
            .map(|(n, _)| n.as_str())
            .collect();
        let ok = still_up.is_empty();
        let detail = if ok {
            format!("all {} planned services are down", self.services.len())
        } else {
            format!("still up: {}", still_up.join(", "))
        };
        let step = Step::finished(ShutdownPhase::Verify, None, ok, detail);
        self.ended(id, step.audited("verify".to_owned())).await;
    }
}
