//! Roles: what a connection's peer may ask for.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A role grants its own requests and those of every lower role: a responder may also
/// do what an operator and a viewer may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads status, lists and reports.
    Viewer,
    /// Runs backups, verifies, drills and heartbeats, and reloads the config.
    Operator,
    /// Shuts services down, aborts, restores.
    Responder,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Responder];

    /// The name used in the config and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Responder => "responder",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
