//! The drill loop: every `[drills] interval` (plus up to a tenth, so hosts started
//! together do not drill together), the enabled scenarios.
//!
//! When it is due is read from the catalog (the last scheduled run that was not
//! cancelled), so a restart neither drills again at once nor forgets a drill. A run
//! that real work cancelled, or that was due while a shutdown ran, is tried again
//! after [`RETRY`] rather than a whole interval later.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drd_core::workers::Worker;
use drd_proto::{DrillOutcome, DrillTrigger};
use rand::Rng;

use crate::runner::{host_busy, record_yield, Filter};
use crate::{store, Drills, Error};

/// How soon a drill run that could not run, or was cancelled, is tried again.
pub const RETRY: Duration = Duration::from_secs(600);

/// How long after drd first starts, on a host that has never drilled, the first run
/// comes (or one interval, if that is shorter): not in the middle of the start, and
/// not a whole six hours later either.
pub const FIRST_DELAY: Duration = Duration::from_secs(600);

/// How long a disabled loop waits before it reads the config again.
const DISABLED_RECHECK: Duration = Duration::from_secs(60);

/// The `drills` worker.
pub struct DrillLoop {
    drills: Arc<Drills>,
    next_wait: Duration,
    /// When the loop first looked (Unix ms): a host that never drilled starts from it.
    started: Option<i64>,
    /// A due run already yielded to the real work under way (recorded once).
    yielded: bool,
}

impl DrillLoop {
    /// The loop over `drills`.
    pub fn new(drills: Arc<Drills>) -> DrillLoop {
        DrillLoop {
            drills,
            next_wait: Duration::ZERO,
            started: None,
            yielded: false,
        }
    }
}

#[async_trait]
impl Worker for DrillLoop {
    fn name(&self) -> &'static str {
        "drills"
    }

    async fn step(&mut self) -> Result<String, String> {
        let catalog = &self.drills.core.catalog;
        let first_look = match self.started {
            Some(at) => at,
            None => {
                let now = self.drills.clock.now_ms();
                let closed = store::close_unfinished(catalog, now)
                    .await
                    .map_err(|e| e.to_string())?;
                if closed > 0 {
                    tracing::warn!(
                        runs = closed,
                        "drill runs cut short by a stop were closed as cancelled"
                    );
                }
                *self.started.insert(now)
            }
        };
        let config = self.drills.core.config();
        let drills = &config.config.drills;
        if !drills.enabled {
            self.next_wait = DISABLED_RECHECK;
            return Ok("disabled ([drills] enabled = false)".to_owned());
        }
        let interval = i64::try_from(drills.interval.as_millis()).unwrap_or(i64::MAX);
        let now = self.drills.clock.now_ms();
        let last = store::last_scheduled(catalog)
            .await
            .map_err(|e| e.to_string())?;
        let first_delay = i64::try_from(FIRST_DELAY.as_millis()).unwrap_or(i64::MAX);
        let due = match last {
            Some(last) => last.saturating_add(interval),
            None => first_look.saturating_add(first_delay.min(interval)),
        };
        if now < due {
            let jitter = rand::thread_rng().gen_range(0..=interval / 10);
            self.next_wait = Duration::from_millis((due - now + jitter) as u64);
            return Ok(format!(
                "next run after {}",
                drd_proto::text::time(due.saturating_add(jitter))
            ));
        }
        if let Some(why) = host_busy(&self.drills) {
            self.next_wait = RETRY;
            if !self.yielded {
                record_yield(&self.drills, why.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                self.yielded = true;
            }
            return Ok(format!("due, but {why}; trying again in 10m"));
        }
        self.yielded = false;
        let noop: crate::ProgressFn = Arc::new(|_| {});
        let filter = Filter {
            enabled_only: true,
            ..Filter::default()
        };
        match self.drills.run(DrillTrigger::Schedule, filter, noop).await {
            Ok(report) => {
                let count =
                    |o: DrillOutcome| report.results.iter().filter(|r| r.outcome == o).count();
                self.next_wait = if report.outcome == DrillOutcome::Cancelled {
                    RETRY
                } else {
                    drills.interval
                };
                let line = format!(
                    "run #{}: {} passed, {} failed, {} cancelled",
                    report.id,
                    count(DrillOutcome::Pass),
                    count(DrillOutcome::Fail),
                    count(DrillOutcome::Cancelled)
                );
                if report.outcome == DrillOutcome::Fail {
                    Err(line)
                } else {
                    Ok(line)
                }
            }
            Err(err @ (Error::Busy { .. } | Error::HostBusy(_))) => {
                self.next_wait = RETRY;
                Ok(format!("due, but {err}; trying again in 10m"))
            }
            Err(err) => {
                self.next_wait = RETRY;
                Err(err.to_string())
            }
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next_wait).await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use drd_alerts::Alerts;
    use drd_backup::Backups;
    use drd_core::clock::{Clock, ManualClock};
    use drd_core::Core;
    use drd_proto::DrillOutcome;
    use drd_shutdown::Shutdowns;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn drills(dir: &Path, clock: Arc<ManualClock>) -> Arc<Drills> {
        let config = "[daemon]\nstate_dir = \"state\"\n\
                      [drills]\ninterval = \"1h\"\nscenarios = [\"rto_rpo\"]\n";
        let core = Arc::new(Core::for_test(dir, config));
        let backups = Arc::new(Backups::new(core.clone()));
        let shutdowns = Arc::new(Shutdowns::new(core.clone(), backups.clone()));
        let alerts = Arc::new(Alerts::new(core.clone(), clock.clone()));
        Arc::new(Drills::new(core, backups, shutdowns, alerts, clock))
    }

    #[tokio::test]
    async fn the_loop_runs_at_its_interval_and_a_due_run_yields_to_a_backup_on_record() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at(1_800_000_000_000));
        let drills = drills(tmp.path(), clock.clone());
        let mut worker = DrillLoop::new(drills.clone());

        // A host that never drilled drills FIRST_DELAY after drd starts.
        let line = worker.step().await.unwrap();
        assert!(line.starts_with("next run after"), "{line}");
        assert!(worker.next_wait >= FIRST_DELAY, "{:?}", worker.next_wait);
        clock.advance(FIRST_DELAY.as_millis() as i64);
        let line = worker.step().await.unwrap();
        assert!(line.starts_with("run #1:"), "{line}");
        assert_eq!(worker.next_wait, HOUR);

        clock.advance(30 * 60_000);
        let line = worker.step().await.unwrap();
        assert!(line.starts_with("next run after"), "{line}");
        let half = HOUR / 2;
        assert!(
            worker.next_wait >= half && worker.next_wait <= half + HOUR / 10,
            "waits the rest of the interval plus up to a tenth: {:?}",
            worker.next_wait
        );

        // Due, but a real backup holds the host: the run is recorded as cancelled once,
        // and tried again after RETRY rather than a whole interval later.
        clock.advance(30 * 60_000);
        drills
            .backups
            .running_jobs
            .lock()
            .unwrap()
            .insert("app".to_owned());
        let line = worker.step().await.unwrap();
        assert!(line.contains("a backup of job app started"), "{line}");
        assert_eq!(worker.next_wait, RETRY);
        let _ = worker.step().await.unwrap();
        let catalog = &drills.core.catalog;
        assert_eq!(
            store::runs_since(catalog, 0).await.unwrap(),
            2,
            "recorded once"
        );
        let results = store::results_since(catalog, 0).await.unwrap();
        let (_, yielded) = results.last().unwrap();
        assert_eq!(yielded.outcome, DrillOutcome::Cancelled);
        assert!(
            yielded.evidence.contains("a backup of job app started"),
            "{yielded:?}"
        );

        // The backup ends: the next look runs the drills, and the interval starts again.
        drills.backups.running_jobs.lock().unwrap().clear();
        let line = worker.step().await.unwrap();
        assert!(line.starts_with("run #3:"), "{line}");
        assert_eq!(worker.next_wait, HOUR);
    }

    #[tokio::test]
    async fn a_run_killed_midway_is_closed_as_cancelled_at_the_next_start() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at(1_800_000_000_000));
        let drills = drills(tmp.path(), clock.clone());
        let catalog = &drills.core.catalog;
        let open = store::start_run(catalog, DrillTrigger::Schedule, clock.now_ms())
            .await
            .unwrap();
        let mut worker = DrillLoop::new(drills.clone());
        let _ = worker.step().await.unwrap();
        clock.advance(FIRST_DELAY.as_millis() as i64);
        let line = worker.step().await.unwrap();
        assert!(
            line.starts_with("run #2:"),
            "a cut-short run does not count: {line}"
        );
        let outcome: String = catalog
            .call("read", move |c| {
                c.query_row(
                    "SELECT outcome FROM drill_runs WHERE id = ?1",
                    [open],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(outcome, "cancelled");
    }
}
