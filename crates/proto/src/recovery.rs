//! Wire types of a recovery, the second half of the emergency workflow: the plan a
//! dry run prints, the go / no-go checks, the report at its end with the measured RTO,
//! and the history of shutdowns and recoveries.
//!
//! A recovery streams the same [`crate::ShutdownEvent`]s as a shutdown (its own
//! phases: initiate, validate, restore data, start, verify, done).

use serde::{Deserialize, Serialize};

use crate::named::named;
use crate::{ServiceResult, ShutdownTrigger};

named! {
    /// Which way a run of the shutdown machine goes.
    pub enum RunKind {
        /// Services were stopped.
        Shutdown = "shutdown",
        /// Services were brought back.
        Recovery = "recovery",
    }
}

named! {
    /// How a recovery ended.
    pub enum RecoveryOutcome {
        /// Every service it was to start runs and is healthy.
        Recovered = "recovered",
        /// It ran to its end, but some services did not come back (each is named).
        Incomplete = "incomplete",
        /// A check before the start failed: nothing was started.
        NoGo = "no-go",
        /// It was stopped at a safe point by `drctl abort`; what it started runs.
        Aborted = "aborted",
    }
}

/// One go / no-go check of the validate phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidationCheck {
    /// What was checked: `trigger`, `api validate`, `db integrity /var/lib/db.sqlite`.
    pub subject: String,
    /// Whether it passed.
    pub ok: bool,
    /// The evidence.
    pub detail: String,
}

/// One service in a recovery plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedStart {
    /// Its name in the config.
    pub name: String,
    /// `process`, `docker`, `compose` or `systemd`.
    pub driver: String,
    /// What the driver acts on: pidfile, container, unit.
    pub target: String,
    /// The services it waits for (they start before it).
    pub depends_on: Vec<String>,
    /// The health check waited for before the next level; empty when it has none.
    pub health: String,
    /// Whether it will be started, or why not (`running already`).
    pub start: bool,
    /// Why it is (not) started.
    pub why: String,
}

/// What a recovery would do; printed by `drctl recover --dry-run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryPlan {
    /// The shutdown it recovers from, if any.
    pub recovers: Option<i64>,
    /// That shutdown's trigger.
    pub trigger: Option<ShutdownTrigger>,
    /// Start levels, first to start first: what others depend on comes first;
    /// services in one level start in parallel.
    pub levels: Vec<Vec<PlannedStart>>,
    /// The go / no-go checks as of now.
    pub checks: Vec<ValidationCheck>,
    /// The preserve jobs whose snapshots `--restore-data` restores, with the snapshot.
    pub restore: Vec<String>,
}

/// What a recovery's measured RTO spans, as the audit log and drctl say it.
pub const RTO_SPAN: &str = "from the shutdown's start until every service was back, undrained";

/// The end of a recovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// The recovery's run id in the catalog.
    pub run_id: i64,
    /// The shutdown it recovered from, if any.
    pub recovers: Option<i64>,
    /// How it ended.
    pub outcome: RecoveryOutcome,
    /// How long the recovery itself took (milliseconds).
    pub elapsed_ms: u64,
    /// The measured RTO: from the shutdown's start until every service was back,
    /// healthy and undrained (milliseconds); `None` unless every service came back.
    pub rto_ms: Option<u64>,
    /// The go / no-go checks.
    pub checks: Vec<ValidationCheck>,
    /// What was restored before the start, one line each.
    pub restored: Vec<String>,
    /// Each planned service, in start order.
    pub services: Vec<ServiceResult>,
    /// Everything that went wrong.
    pub problems: Vec<String>,
}

/// One past shutdown or recovery, for `drctl shutdowns`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// Its run id.
    pub run_id: i64,
    /// Shutdown or recovery.
    pub kind: RunKind,
    /// The trigger (a recovery carries its shutdown's).
    pub trigger: ShutdownTrigger,
    /// Who started it.
    pub actor: String,
    /// When it started (Unix milliseconds).
    pub started_unix_ms: i64,
    /// When it ended; `None` while it runs or when it was interrupted.
    pub ended_unix_ms: Option<i64>,
    /// `running` or how it ended (`completed`, `recovered`, `no-go`, ...).
    pub state: String,
    /// For a recovery: the shutdown it brought back.
    pub recovers: Option<i64>,
    /// For a recovery: the measured RTO (milliseconds).
    pub rto_ms: Option<u64>,
}
