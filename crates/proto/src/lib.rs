//! drd-proto: what `drd` and `drctl` say to each other over the control socket.
//!
//! Both binaries depend on this crate and nothing heavier, so the client never pulls in
//! SQLite or Docker. A connection starts with a handshake ([`ClientFrame::Hello`] /
//! [`ServerFrame::Welcome`]); after that the client sends one [`Request`] at a time and
//! the server answers with any number of [`Event`]s followed by one [`Response`].
//! Frames are length-delimited with a hard cap ([`MAX_FRAME_LEN`]); payloads are
//! encoded by [`codec`], the one place that knows the wire encoding.

mod alerts;
mod backup;
pub mod codec;
mod drills;
mod event;
mod jobs;
mod message;
mod named;
mod recovery;
mod request;
mod response;
mod role;
mod shutdown;
pub mod text;
pub mod time;
mod watch;

pub use alerts::{AlertAck, AlertInfo, AlertStatus, AlertTestReport, DeliveryInfo};
pub use backup::{
    parse_percent, AffectedFile, BackupReport, DamagedFile, RepairReport, RestoreReport,
    SnapshotInfo, SnapshotSelector, VerifyProblem, VerifyReport,
};
pub use drills::{
    Category, CategoryReport, CheckStatus, DrillOutcome, DrillReport, DrillResult, DrillRunReport,
    DrillTrigger, ReadinessCheck, Scenario, ScenarioInfo, ValidateReport,
};
pub use event::{Event, Progress, ProgressUnit};
pub use jobs::{
    EmergencyReport, EmergencyRun, GcReport, JobInfo, JobRetention, OffsiteLag, PruneReport,
    RetainedSnapshot, RunInfo, RunOutcome, RunTrigger, TierPrune,
};
pub use message::{ClientFrame, Hello, ServerFrame, Welcome};
pub use recovery::{
    PlannedStart, RecoveryOutcome, RecoveryPlan, RecoveryReport, RunKind, RunSummary,
    ValidationCheck, RTO_SPAN,
};
pub use request::Request;
pub use response::{
    AuditEntry, AuditMismatch, AuditVerifyReport, DaemonState, ErrorKind, ErrorReply, Reply,
    Response, StatusReport, WorkerState, WorkerStatus,
};
pub use role::Role;
pub use shutdown::{
    AbortReport, EventState, PlannedHook, PlannedPreserve, PlannedService, RunState, ServiceResult,
    ServiceState, ShutdownEvent, ShutdownOutcome, ShutdownPhase, ShutdownPlan, ShutdownReport,
    ShutdownStatus, ShutdownTrigger,
};
pub use watch::{
    ActionTaken, BreakerState, CheckState, MonitorCheck, PingKind, Severity, SwitchInfo,
    SwitchState,
};

/// The protocol version this build speaks. Bump it on any change to the frames that an
/// older peer would misread; the handshake turns a mismatch into a clear error.
pub const PROTOCOL_VERSION: u32 = 7;

/// The largest frame either side accepts, length prefix excluded. A peer that announces
/// more is answered with an error and disconnected before anything is allocated.
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Where `drd` listens and `drctl` connects when neither the config nor `--socket` /
/// `DRD_SOCKET` say otherwise.
pub const DEFAULT_SOCKET: &str = "/run/drd/drd.sock";
