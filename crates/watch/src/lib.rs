//! drd-watch: the watching half of drd. Monitors sample the host, checks decide with
//! hysteresis so they never flap, and one policy acts on what fires (alert, backup,
//! emergency shutdown, a command), every decision with its evidence in the audit log.
//!
//! The decisions themselves are plain code with no I/O, driven by values and a clock
//! in Unix milliseconds ([`condition`], [`breaker`], [`deadman`]), so every rule is
//! tested exhaustively; the samplers and workers that feed them stay thin.
//!
//! | concern | module |
//! | --- | --- |
//! | [`Watch`]: the layer's shared state (core, backups, shutdowns, the checks' view) | `lib.rs` |
//! | a check with separate fire and clear thresholds, confirmed `for` a time or `k of n` samples | [`condition`] |
//! | a circuit breaker: closed, open with exponential back-off, half-open trials (in drd-core, shared with the alert receivers) | [`breaker`] |
//! | a deadman switch: new, up, late, down, paused; runs that never finish; one grace after a restart | [`deadman`] |
//! | one cycle of readings turned into decisions, kept in the catalog, shown by `drctl monitors` | [`checks`] |
//! | the actions a decision takes, with cooldowns; the one `alert` | [`policy`] |
//! | the monitors' memory in the catalog (`watch_state`) | [`store`] |
//! | deadman switches at run time: pings, pause, the clock worker, memory in the catalog | [`switches`] |
//! | the resource monitor: space, inodes, memory, swap, load, pressure, open files | [`resources`] |
//! | the corruption monitor: SQLite checks on a copy, protected files' BLAKE3 manifests, rolling pack verification | [`corruption`] |
//! | the network monitor: TCP, HTTP, DNS targets; a partition when a quorum fails | [`network`] |
//! | the service health monitor: probes behind circuit breakers; the cascade | [`services`] |

pub mod checks;
pub mod condition;
pub mod corruption;
pub mod deadman;
pub mod network;
pub mod policy;
pub mod resources;
pub mod services;
pub mod store;
pub mod switches;

/// The circuit breaker lives in drd-core: the alert receivers use it too.
pub use drd_core::breaker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use drd_alerts::Alerts;
use drd_backup::Backups;
use drd_core::clock::Clock;
use drd_core::Core;
use drd_shutdown::Shutdowns;

/// The watching layer's state, behind an `Arc`: what the monitors, the deadman
/// switches and their handlers share.
pub struct Watch {
    /// What every layer needs: config, catalog, audit log, workers.
    pub core: Arc<Core>,
    /// For `backup` and `emergency_backup` actions.
    pub backups: Arc<Backups>,
    /// For `shutdown` actions.
    pub shutdowns: Arc<Shutdowns>,
    /// Where alerts go.
    pub alerts: Arc<Alerts>,
    /// "Now", for every decision (the system clock, shifted in tests).
    pub clock: Arc<dyn Clock>,
    /// Each monitor's checks, by monitor then check: what `drctl monitors` shows.
    checks: Mutex<BTreeMap<&'static str, checks::Monitor>>,
    /// The deadman switches' memory.
    switches: switches::Switches,
}

impl Watch {
    /// The watching layer of a daemon running on `core`.
    pub fn new(
        core: Arc<Core>,
        backups: Arc<Backups>,
        shutdowns: Arc<Shutdowns>,
        alerts: Arc<Alerts>,
        clock: Arc<dyn Clock>,
    ) -> Watch {
        Watch {
            core,
            backups,
            shutdowns,
            alerts,
            clock,
            checks: Mutex::default(),
            switches: switches::Switches::default(),
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// Starts every monitor worker of `watch` under its core's supervisor. Monitors read
/// the config in force at each cycle, so a reload changes what they check; one with
/// nothing configured idles.
pub fn spawn_workers(watch: &Arc<Watch>) {
    watch
        .core
        .workers
        .spawn(resources::ResourceMonitor::new(watch.clone()));
    watch
        .core
        .workers
        .spawn(corruption::CorruptionMonitor::new(watch.clone()));
    watch
        .core
        .workers
        .spawn(switches::DeadmanWorker::new(watch.clone()));
    watch
        .core
        .workers
        .spawn(network::NetworkMonitor::new(watch.clone()));
    watch
        .core
        .workers
        .spawn(services::ServicesMonitor::new(watch.clone()));
}
