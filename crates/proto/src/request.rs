//! Requests a client may send, each with the role it needs.

use serde::{Deserialize, Serialize};

use crate::Role;

/// One request. New variants go at the end so older daemons reject them cleanly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// The daemon's state on one screen: version, uptime, workers, recent audit entries.
    Status {
        /// How many of the newest audit entries to include.
        audit_tail: u32,
    },
    /// Audit entries, oldest first.
    AuditList {
        /// Only entries at or after this time (Unix milliseconds).
        since_unix_ms: Option<i64>,
        /// At most this many (the newest ones); 0 means no limit.
        limit: u32,
    },
    /// Recompute the audit hash chain and name the first entry that does not match.
    AuditVerify,
    /// Reload the config file the daemon was started with; a bad one is refused and
    /// the running config stays in force (the same as SIGHUP, but with the reasons
    /// sent back).
    Reload,
}

impl Request {
    /// The least role allowed to make this request.
    pub fn required_role(&self) -> Role {
        match self {
            Request::Status { .. } | Request::AuditList { .. } | Request::AuditVerify => {
                Role::Viewer
            }
            Request::Reload => Role::Operator,
        }
    }

    /// A short name for messages and the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status { .. } => "status",
            Request::AuditList { .. } => "audit",
            Request::AuditVerify => "audit verify",
            Request::Reload => "reload",
        }
    }

    /// Whether the request changes state, and so is audited when it runs (refusals are
    /// audited whatever the request).
    pub fn changes_state(&self) -> bool {
        matches!(self, Request::Reload)
    }
}
