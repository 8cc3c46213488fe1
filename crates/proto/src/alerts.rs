//! What `drctl alerts` shows: open (and recently resolved) alerts, where each went,
//! who acknowledged it, and what a receiver answered to a test alert.

use serde::{Deserialize, Serialize};

use crate::named::named;
use crate::Severity;

named! {
    /// What a delivery tells a receiver.
    pub enum AlertStatus {
        /// The condition holds.
        Firing = "firing",
        /// The condition cleared.
        Resolved = "resolved",
    }
}

/// One alert: a condition with a stable identity (`dedup_key`), open until it clears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInfo {
    /// Its number, for `drctl alerts ack ID`.
    pub id: i64,
    /// Its identity: the same condition firing again while open is this alert.
    pub dedup_key: String,
    /// How urgent.
    pub severity: Severity,
    /// Who raised it: `resources/disk /var`, `deadman/nightly-export`.
    pub source: String,
    /// One line for a pager.
    pub summary: String,
    /// What it is based on.
    pub evidence: String,
    /// When it was raised (Unix ms).
    pub started_unix_ms: i64,
    /// When it cleared (Unix ms); `None` while firing.
    pub resolved_unix_ms: Option<i64>,
    /// Escalation levels reached (1 is the first).
    pub level: u32,
    /// Levels in its chain.
    pub levels: u32,
    /// Who acknowledged it, if anyone.
    pub ack: Option<AlertAck>,
    /// Its deliveries, oldest first.
    pub deliveries: Vec<DeliveryInfo>,
}

/// An acknowledgement: escalation stops there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertAck {
    /// When (Unix ms).
    pub at_unix_ms: i64,
    /// Who, as the audit log names them (`uid=1000 gid=1000 pid=42`).
    pub by: String,
    /// What they said.
    pub comment: Option<String>,
}

/// One delivery of an alert's firing or resolution to one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    /// The receiver, as in `[alerts.receivers.NAME]`.
    pub receiver: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The escalation level that sent it.
    pub level: u32,
    /// Tries so far.
    pub attempts: u32,
    /// When it got through (Unix ms); `None` while it waits.
    pub delivered_unix_ms: Option<i64>,
    /// When it is tried next, while it waits (Unix ms).
    pub next_unix_ms: Option<i64>,
    /// What the receiver last answered (`HTTP 200`, `HTTP 500: ...`, `exit 0`).
    pub result: Option<String>,
}

/// What `drctl alerts test RECEIVER` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTestReport {
    /// The receiver.
    pub receiver: String,
    /// Its kind: `alertmanager`, `webhook`, `exec`.
    pub kind: String,
    /// Where it went, with any credentials hidden.
    pub target: String,
    /// Whether the firing and the resolution both got through.
    pub ok: bool,
    /// What the receiver answered to the firing.
    pub firing: String,
    /// What the receiver answered to the resolution.
    pub resolved: String,
}
