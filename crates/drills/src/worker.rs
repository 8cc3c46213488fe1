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

use crate::runner::{host_busy, Filter};
use crate::{store, Drills, Error};

/// How soon a drill run that could not run, or was cancelled, is tried again.
pub const RETRY: Duration = Duration::from_secs(600);

/// How long a disabled loop waits before it reads the config again.
const DISABLED_RECHECK: Duration = Duration::from_secs(60);

/// The `drills` worker.
pub struct DrillLoop {
    drills: Arc<Drills>,
    next_wait: Duration,
    started: bool,
}

impl DrillLoop {
    /// The loop over `drills`.
    pub fn new(drills: Arc<Drills>) -> DrillLoop {
        DrillLoop {
            drills,
            next_wait: Duration::ZERO,
            started: false,
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
        if !self.started {
            let closed = store::close_unfinished(catalog, self.drills.clock.now_ms())
                .await
                .map_err(|e| e.to_string())?;
            if closed > 0 {
                tracing::warn!(
                    runs = closed,
                    "drill runs cut short by a stop were closed as cancelled"
                );
            }
            self.started = true;
        }
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
        if let Some(last) = last {
            let due = last.saturating_add(interval);
            if now < due {
                let jitter = rand::thread_rng().gen_range(0..=interval / 10);
                self.next_wait = Duration::from_millis((due - now + jitter) as u64);
                return Ok(format!(
                    "next run after {}",
                    drd_proto::text::time(due.saturating_add(jitter))
                ));
            }
        }
        if let Some(why) = host_busy(&self.drills) {
            self.next_wait = RETRY;
            return Ok(format!("due, but {why}; trying again in 10m"));
        }
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
