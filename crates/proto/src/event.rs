//! Events streamed ahead of a response while a long request runs.

use serde::{Deserialize, Serialize};

/// Something the client may show while it waits for the response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// How far the request in flight has come.
    Progress(Progress),
    /// A step of an emergency shutdown (or its rollback).
    Shutdown(crate::ShutdownEvent),
}

/// A progress report: `done` of `total` units of `task`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    /// What is being done, for example `verifying audit chain`.
    pub task: String,
    /// Units done so far.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// What a unit is.
    pub unit: ProgressUnit,
    /// A line about the current item (a file, a service), or empty.
    pub detail: String,
}

/// The unit a [`Progress`] counts in, so the client can format rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProgressUnit {
    /// Discrete items (entries, files, services).
    Items,
    /// Bytes.
    Bytes,
}
