//! Responses: an error or a reply, and the reports replies carry.

use serde::{Deserialize, Serialize};

use crate::{BackupReport, RestoreReport, SnapshotInfo, VerifyReport};

/// The final answer to a request. `Error` is variant 0 and must stay there: a client of
/// any version can then read why the daemon turned it away.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "one Response is built per request and moved once into the codec; a Box would \
              only add an allocation"
)]
pub enum Response {
    /// The request failed or was refused.
    Error(ErrorReply),
    /// The request succeeded.
    Ok(Reply),
}

/// Why a request failed, in words for the person at the terminal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The kind, which `drctl` maps to its exit code.
    pub kind: ErrorKind,
    /// What went wrong and what to do about it.
    pub message: String,
}

/// Kinds of failure. New kinds go at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The client speaks another protocol version.
    VersionMismatch,
    /// The frame or request could not be read.
    BadRequest,
    /// The peer's role does not allow the request.
    PermissionDenied,
    /// Too many connections are open; try again.
    Busy,
    /// The daemon is stopping and takes no new requests.
    ShuttingDown,
    /// The config offered for reload is invalid; the old one stays in force.
    InvalidConfig,
    /// The request ran and failed inside the daemon.
    Internal,
    /// What the request names does not exist (a job, a snapshot).
    NotFound,
    /// The request ran and failed for a reason in the world (a source missing, a
    /// command that failed, a key that does not open the repository).
    Failed,
}

/// A successful answer, one variant per request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to [`crate::Request::Status`].
    Status(StatusReport),
    /// Answer to [`crate::Request::AuditList`].
    AuditEntries(Vec<AuditEntry>),
    /// Answer to [`crate::Request::AuditVerify`].
    AuditVerified(AuditVerifyReport),
    /// Answer to [`crate::Request::Reload`]: the config now in force.
    Reloaded {
        /// The file that was read.
        config_path: String,
    },
    /// Answer to [`crate::Request::Backup`].
    BackedUp(BackupReport),
    /// Answer to [`crate::Request::Backups`].
    Snapshots(Vec<SnapshotInfo>),
    /// Answer to [`crate::Request::Restore`].
    Restored(Box<RestoreReport>),
    /// Answer to [`crate::Request::Verify`]: one report per repository checked.
    Verified(Vec<VerifyReport>),
    /// Answer to [`crate::Request::Jobs`].
    Jobs(Vec<crate::JobInfo>),
    /// Answer to [`crate::Request::Prune`].
    Pruned(crate::PruneReport),
    /// Answer to [`crate::Request::EmergencyBackup`].
    EmergencyBackedUp(crate::EmergencyReport),
    /// Answer to a dry-run [`crate::Request::Shutdown`]: what would be done.
    ShutdownPlanned(Box<crate::ShutdownPlan>),
    /// Answer to [`crate::Request::Shutdown`]: how it ended.
    ShutdownFinished(Box<crate::ShutdownReport>),
    /// Answer to [`crate::Request::Abort`].
    Aborted(Box<crate::AbortReport>),
    /// Answer to [`crate::Request::RepairIndex`]: one report per repository.
    IndexRepaired(Vec<crate::RepairReport>),
    /// Answer to [`crate::Request::Heartbeat`]: the switch after the ping.
    Pinged(crate::SwitchInfo),
    /// Answer to [`crate::Request::Deadman`].
    Switches(Vec<crate::SwitchInfo>),
    /// Answer to [`crate::Request::DeadmanPause`]: the switch after the change.
    SwitchPaused(crate::SwitchInfo),
    /// Answer to [`crate::Request::Monitors`].
    Monitors(Vec<crate::MonitorCheck>),
    /// Answer to a dry-run [`crate::Request::Recover`]: what would be done, and the
    /// go / no-go as of now.
    RecoveryPlanned(Box<crate::RecoveryPlan>),
    /// Answer to [`crate::Request::Recover`]: how it ended.
    Recovered(Box<crate::RecoveryReport>),
    /// Answer to [`crate::Request::Shutdowns`].
    Shutdowns(Vec<crate::RunSummary>),
    /// Answer to [`crate::Request::Alerts`].
    Alerts(Vec<crate::AlertInfo>),
    /// Answer to [`crate::Request::AlertAck`]: the alert after the ack.
    AlertAcked(Box<crate::AlertInfo>),
    /// Answer to [`crate::Request::AlertTest`].
    AlertTested(crate::AlertTestReport),
    /// Answer to [`crate::Request::DrillRun`].
    DrillRan(Box<crate::DrillRunReport>),
    /// Answer to [`crate::Request::DrillList`].
    DrillScenarios(Vec<crate::ScenarioInfo>),
    /// Answer to [`crate::Request::DrillReport`].
    DrillReport(Box<crate::DrillReport>),
    /// Answer to [`crate::Request::Validate`].
    Validated(crate::ValidateReport),
}

/// What `drctl status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon's version.
    pub daemon_version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The host name.
    pub host: String,
    /// Whether the daemon is serving or stopping.
    pub state: DaemonState,
    /// When the daemon started (Unix milliseconds).
    pub started_unix_ms: i64,
    /// The daemon's clock when it answered (Unix milliseconds).
    pub now_unix_ms: i64,
    /// The config file in force.
    pub config_path: String,
    /// When that config was loaded (Unix milliseconds).
    pub config_loaded_unix_ms: i64,
    /// The control socket.
    pub socket: String,
    /// The state directory (catalog, checkpoints, scratch).
    pub state_dir: String,
    /// The catalog's schema version.
    pub catalog_schema: u32,
    /// Every background worker and what it is doing.
    pub workers: Vec<WorkerStatus>,
    /// The newest audit entries, oldest first.
    pub recent_audit: Vec<AuditEntry>,
    /// An emergency shutdown that is running, or that drd died in the middle of.
    pub shutdown: Option<Box<crate::ShutdownStatus>>,
}

/// The daemon's own life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DaemonState {
    /// Serving requests.
    Running,
    /// Stopping: in-flight requests finish, new ones are refused.
    Stopping,
}

/// One background worker as the supervisor sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker's name.
    pub name: String,
    /// What it is doing now.
    pub state: WorkerState,
    /// A line from the worker about its last or current step.
    pub detail: String,
    /// Steps completed since the daemon started.
    pub steps: u64,
    /// Steps that failed since the daemon started.
    pub errors: u64,
    /// When the last step ended (Unix milliseconds).
    pub last_step_unix_ms: Option<i64>,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// A worker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    /// Doing a step of work.
    Busy,
    /// Waiting for the next step.
    Idle,
    /// The last step failed; the worker will try again.
    Failing,
    /// Finished or cancelled.
    Stopped,
}

/// One audit log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub id: i64,
    /// When it happened (Unix milliseconds).
    pub unix_ms: i64,
    /// Who did it: `uid=1000 gid=1000 pid=4242`, `signal SIGHUP`, `daemon`, `scheduler`.
    pub actor: String,
    /// What was done or asked, for example `reload` or `request status`.
    pub action: String,
    /// `ok`, `refused` or `failed`.
    pub outcome: String,
    /// Details: reasons, paths, ids.
    pub detail: String,
    /// The entry's hash (hex), which the next entry chains to.
    pub hash: String,
}

/// The result of recomputing the audit chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditVerifyReport {
    /// How many entries were checked.
    pub entries: u64,
    /// The first entry that does not match, if any.
    pub first_mismatch: Option<AuditMismatch>,
    /// The hash of the last entry (hex), to compare with a copy kept elsewhere.
    pub head_hash: Option<String>,
}

/// An audit entry whose stored hash or link does not match what it should be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditMismatch {
    /// The entry's id.
    pub id: i64,
    /// What does not match.
    pub reason: String,
}
