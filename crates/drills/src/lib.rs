//! drd-drills: recovery drills. A backup that was never restored is a hope; a drill
//! restores it, checks it and times it, in a sandbox, and keeps what it measured.
//!
//! It sits on everything below the daemon: drd-backup (restore, verify, tiers),
//! drd-shutdown (the service drivers), drd-watch (the network check's logic) and
//! drd-alerts (a failed drill raises an alert). It adds orchestration and
//! measurement, never a second way of restoring or stopping anything.
//!
//! | concern | module |
//! | --- | --- |
//! | shared state, one drill run at a time, preemption by real work | [`Drills`] (this file) |
//! | one run: the scenarios in order, results kept as they come, alerts | `runner.rs` |
//! | the scenarios, one file each | `scenarios/` |
//! | the sandbox drills restore into (free-space check, removal) | `sandbox.rs` |
//! | runs and results in the catalog | `store.rs` |
//! | the drill loop, every `[drills] interval` | [`worker`] |
//! | `drctl test report`: per category over a period | `report.rs` |
//! | `drctl validate`: the host's preparedness | [`validate`] |
//! | the drills' Prometheus area | [`metrics`] |

pub mod metrics;
mod report;
mod runner;
mod sandbox;
mod scenarios;
mod store;
pub mod validate;
pub mod worker;

use std::sync::{Arc, Mutex, PoisonError};

use drd_alerts::Alerts;
use drd_backup::Backups;
use drd_core::clock::Clock;
use drd_core::Core;
use drd_proto::{
    Category, DrillReport, DrillRunReport, DrillTrigger, Progress, Scenario, ScenarioInfo,
};
use drd_shutdown::Shutdowns;
use tokio_util::sync::CancellationToken;

pub use runner::Filter;

/// Where progress goes: the control connection's events, or nowhere for the loop.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What can go wrong around a drill run (a drill that fails is a result, not this).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another drill run holds the one slot.
    #[error("a drill run is already under way (started {started}); wait for it, or see it with `drctl status`")]
    Busy {
        /// When it started, as RFC 3339.
        started: String,
    },
    /// A shutdown or recovery runs: drills never compete with one.
    #[error("{0}; drills do not run while the host is being shut down or recovered")]
    HostBusy(String),
    /// The filter chose nothing.
    #[error("{0}")]
    NothingToRun(String),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] drd_core::catalog::CatalogError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The drills' state for the daemon's life, behind an `Arc`.
pub struct Drills {
    /// Config, catalog, audit log, workers, stop token.
    pub core: Arc<Core>,
    /// Restore, verify and tiers; its running jobs preempt a drill.
    pub backups: Arc<Backups>,
    /// The shutdown layer: a running shutdown preempts a drill, and drivers.
    pub shutdowns: Arc<Shutdowns>,
    /// Where a failed drill's alert goes.
    pub alerts: Arc<Alerts>,
    /// The clock runs are stamped with.
    pub clock: Arc<dyn Clock>,
    /// The run under way, if any: when it started and how to cancel it.
    current: Mutex<Option<(i64, CancellationToken)>>,
}

impl Drills {
    /// The drills of a daemon made of these layers.
    pub fn new(
        core: Arc<Core>,
        backups: Arc<Backups>,
        shutdowns: Arc<Shutdowns>,
        alerts: Arc<Alerts>,
        clock: Arc<dyn Clock>,
    ) -> Drills {
        Drills {
            core,
            backups,
            shutdowns,
            alerts,
            clock,
            current: Mutex::default(),
        }
    }

    /// Runs the drills `filter` picks now, reporting progress, and returns the run.
    /// Refused while another drill run, a shutdown or a recovery is under way.
    pub async fn run(
        self: &Arc<Self>,
        trigger: DrillTrigger,
        filter: Filter,
        progress: ProgressFn,
    ) -> Result<DrillRunReport> {
        runner::run(self, trigger, filter, progress).await
    }

    /// The scenarios, with what each would drill under the config in force.
    pub fn list(&self) -> Vec<ScenarioInfo> {
        let config = self.core.config();
        Scenario::ALL
            .iter()
            .map(|&scenario| ScenarioInfo {
                scenario,
                category: scenarios::category(scenario),
                description: scenarios::describe(scenario).to_owned(),
                enabled: config.config.drills.scenarios.contains(&scenario),
                subjects: scenarios::subjects(scenario, &config.config),
            })
            .collect()
    }

    /// Per category, what the drills measured since `since_ms`.
    pub async fn report(&self, since_ms: i64) -> Result<DrillReport> {
        report::build(self, since_ms).await
    }

    /// When the newest drill of each category passed (Unix ms), for `drctl validate`
    /// and the metrics.
    pub async fn last_passes(&self) -> Result<Vec<(Category, i64)>> {
        Ok(store::last_passes(&self.core.catalog).await?)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(i64, CancellationToken)>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
