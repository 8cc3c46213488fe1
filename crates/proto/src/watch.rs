//! What the watching half reports: monitor checks (`drctl monitors`) and deadman
//! switches (`drctl deadman`, `drctl heartbeat`).

use serde::{Deserialize, Serialize};

use crate::named::named;

named! {
    /// Where a monitor check stands; hysteresis and confirmation decide the moves.
    pub enum CheckState {
        /// Within bounds.
        Ok = "ok",
        /// Past the fire threshold, not yet confirmed.
        Pending = "pending",
        /// Fired, and not yet back past the clear threshold.
        Firing = "firing",
        /// Firing, back past the clear threshold, not yet confirmed.
        Clearing = "clearing",
    }
}

named! {
    /// Where a deadman switch stands, with healthchecks.io's meaning.
    pub enum SwitchState {
        /// No ping yet (or none since it was resumed).
        New = "new",
        /// Pinged on time.
        Up = "up",
        /// The expected ping is overdue, within the grace.
        Late = "late",
        /// Overdue past the grace, a run that never finished, or a failure.
        Down = "down",
        /// Paused by someone: it acts on nothing.
        Paused = "paused",
    }
}

named! {
    /// What a heartbeat said.
    pub enum PingKind {
        /// The job succeeded (`drctl heartbeat NAME`, or `--exit-code 0`).
        Success = "success",
        /// The job started (`--start`); a success is due within the run limit.
        Start = "start",
        /// The job failed (`--fail`, or a non-zero `--exit-code`).
        Fail = "fail",
    }
}

named! {
    /// Where a circuit breaker stands.
    pub enum BreakerState {
        /// Probes go through.
        Closed = "closed",
        /// Probes are held back until its open time passes.
        Open = "open",
        /// Trial probes go through.
        HalfOpen = "half-open",
    }
}

named! {
    /// How urgent an alert is.
    pub enum Severity {
        /// Worth knowing; nobody needs to act now.
        Info = "info",
        /// Needs attention soon.
        Warning = "warning",
        /// Needs someone now.
        Critical = "critical",
    }
}

/// One action a condition took (or, with automatic shutdown off, would have taken).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionTaken {
    /// When (Unix ms).
    pub at_unix_ms: i64,
    /// The action as configured, in words: `alert critical`, `shutdown network_partition`.
    pub action: String,
    /// What came of it: `done`, `failed: ...`, `cooldown`, `would shut down: ...`.
    pub outcome: String,
}

/// One monitor check, as `drctl monitors` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorCheck {
    /// The monitor: `resources`, `corruption`, `network`, `services`.
    pub monitor: String,
    /// The check within it: `disk /var`, `memory_available`, `partition`, `service api`.
    pub check: String,
    /// Where it stands.
    pub state: CheckState,
    /// The newest value, in words (`96.2% used`, `2 of 3 targets failing`); empty
    /// before the first sample.
    pub value: String,
    /// The fire threshold and its confirmation, in words (`>= 95% for 2m`).
    pub fire: String,
    /// The clear threshold, in words (`<= 90%`).
    pub clear: String,
    /// Since when it has been in this state (Unix ms), once sampled.
    pub since_unix_ms: Option<i64>,
    /// The evidence of its last decision (fired or cleared), or of its newest sample.
    pub evidence: String,
    /// The state of the circuit breaker in front of it, for service health checks.
    pub breaker: Option<BreakerState>,
    /// Why the newest sample could not be taken, when it could not.
    pub error: Option<String>,
    /// The newest actions its decisions took, oldest first.
    pub actions: Vec<ActionTaken>,
}

/// One deadman switch, as `drctl deadman` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchInfo {
    /// Its name, as in `[deadman.NAME]`.
    pub name: String,
    /// Where it stands.
    pub state: SwitchState,
    /// The newest ping's time (Unix ms) and kind.
    pub last_ping: Option<(i64, PingKind)>,
    /// The exit code the newest ping carried, if any.
    pub last_exit_code: Option<i32>,
    /// When the next success is due (Unix ms); none while new or paused.
    pub next_deadline_unix_ms: Option<i64>,
    /// When it goes down if nothing comes (deadline plus grace, or the run limit).
    pub down_at_unix_ms: Option<i64>,
    /// A run that said `--start` and has not finished: when it started and its id.
    pub running: Option<(i64, Option<String>)>,
    /// Its expectation in words: `every 5m, grace 1m` or `cron 0 3 * * *, grace 1h`.
    pub expects: String,
    /// Since when it has been in this state (Unix ms).
    pub since_unix_ms: Option<i64>,
    /// The newest actions its going down took, oldest first.
    pub actions: Vec<ActionTaken>,
}
