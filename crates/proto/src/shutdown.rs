//! Wire types of the emergency shutdown: what triggered it, the plan a dry run prints,
//! the events streamed while it runs, and the reports at its end.
//!
//! They live here so that `drctl` can print a plan and follow a shutdown without
//! knowing how the daemon's drivers stop anything.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::named::named;

/// Why a shutdown was started; recorded with the run and in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownTrigger {
    /// A person decided (drctl, or SIGUSR1 to drd).
    Manual,
    /// The host or a part of it is failing.
    SystemFailure,
    /// Disk, memory or another resource is running out.
    ResourceExhaustion,
    /// Data is being corrupted; stop writers before it spreads.
    DataCorruption,
    /// The host lost its peers or its storage network.
    NetworkPartition,
    /// The host is compromised.
    SecurityBreach,
    /// A deadman switch went down: the heartbeat it expected never came.
    Deadman,
}

impl ShutdownTrigger {
    /// Every trigger, in the order `--help` lists them.
    pub const ALL: [ShutdownTrigger; 7] = [
        ShutdownTrigger::Manual,
        ShutdownTrigger::SystemFailure,
        ShutdownTrigger::ResourceExhaustion,
        ShutdownTrigger::DataCorruption,
        ShutdownTrigger::NetworkPartition,
        ShutdownTrigger::SecurityBreach,
        ShutdownTrigger::Deadman,
    ];

    /// The name used on the command line and in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownTrigger::Manual => "manual",
            ShutdownTrigger::SystemFailure => "system_failure",
            ShutdownTrigger::ResourceExhaustion => "resource_exhaustion",
            ShutdownTrigger::DataCorruption => "data_corruption",
            ShutdownTrigger::NetworkPartition => "network_partition",
            ShutdownTrigger::SecurityBreach => "security_breach",
            ShutdownTrigger::Deadman => "deadman",
        }
    }

    /// Parses a name written by [`ShutdownTrigger::as_str`].
    pub fn parse(text: &str) -> Result<ShutdownTrigger, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|t| t.as_str()).collect();
                format!("unknown trigger {text:?}; use one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for ShutdownTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phases of a shutdown, in the order they run (rollback only after an abort).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownPhase {
    /// Record each service's state: running, pid, health, restart policy.
    Assess,
    /// Run the preserve backup jobs, within the preserve deadline.
    Preserve,
    /// Run the drain hooks.
    Drain,
    /// Stop the services, level by level.
    Stop,
    /// Check that everything that should be down is down.
    Verify,
    /// The run has ended.
    Done,
    /// After an abort: start what was stopped, in dependency order.
    Rollback,
    /// Recovery: what will be started, in which order.
    Initiate,
    /// Recovery: the go / no-go checks before anything starts.
    Validate,
    /// Recovery: the preserve jobs' snapshots restored (`--restore-data`).
    RestoreData,
    /// Recovery: services started level by level, waiting for health.
    Start,
}

impl ShutdownPhase {
    /// The phase's name in events, checkpoints and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownPhase::Assess => "assess",
            ShutdownPhase::Preserve => "preserve",
            ShutdownPhase::Drain => "drain",
            ShutdownPhase::Stop => "stop",
            ShutdownPhase::Verify => "verify",
            ShutdownPhase::Done => "done",
            ShutdownPhase::Rollback => "rollback",
            ShutdownPhase::Initiate => "initiate",
            ShutdownPhase::Validate => "validate",
            ShutdownPhase::RestoreData => "restore data",
            ShutdownPhase::Start => "start",
        }
    }

    /// Parses a name written by [`ShutdownPhase::as_str`].
    pub fn parse(text: &str) -> Option<ShutdownPhase> {
        [
            ShutdownPhase::Assess,
            ShutdownPhase::Preserve,
            ShutdownPhase::Drain,
            ShutdownPhase::Stop,
            ShutdownPhase::Verify,
            ShutdownPhase::Done,
            ShutdownPhase::Rollback,
            ShutdownPhase::Initiate,
            ShutdownPhase::Validate,
            ShutdownPhase::RestoreData,
            ShutdownPhase::Start,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }
}

impl fmt::Display for ShutdownPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a shutdown would do; printed by `drctl shutdown --dry-run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutdownPlan {
    /// The phases that will run (`--force` leaves out preserve and drain).
    pub phases: Vec<ShutdownPhase>,
    /// Stop levels, first to stop first: dependants before what they depend on;
    /// services in one level stop in parallel.
    pub levels: Vec<Vec<PlannedService>>,
    /// Preserve backup jobs, in the order they run, with the services that asked.
    pub preserve: Vec<PlannedPreserve>,
    /// Drain hooks, in the order they run.
    pub drain: Vec<PlannedHook>,
    /// How long the preserve phase may take in all (milliseconds).
    pub preserve_deadline_ms: u64,
    /// The longest the whole shutdown can take if every step uses its full timeout
    /// (milliseconds).
    pub worst_case_ms: u64,
    /// Whether this is a `--force` plan.
    pub force: bool,
    /// Configured services left out by `--only`.
    pub left_out: Vec<String>,
}

/// One service in a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedService {
    /// Its name in the config.
    pub name: String,
    /// `process`, `docker`, `compose` or `systemd`.
    pub driver: String,
    /// What the driver acts on: pidfile, container, unit.
    pub target: String,
    /// The services it depends on (they stop after it).
    pub depends_on: Vec<String>,
    /// The signal it is sent first (`SIGTERM`), or how its driver stops it.
    pub signal: String,
    /// How long it may take to stop before it is killed (milliseconds).
    pub timeout_ms: u64,
    /// Whether a failed preserve job keeps it running.
    pub critical: bool,
    /// The backup jobs run before it stops.
    pub preserve: Vec<String>,
    /// Whether a rollback can start it again.
    pub can_start: bool,
}

/// A preserve job in a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedPreserve {
    /// The backup job.
    pub job: String,
    /// The services that name it.
    pub services: Vec<String>,
}

/// A drain hook in a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedHook {
    /// The service whose hook it is.
    pub service: String,
    /// The program and its arguments.
    pub run: Vec<String>,
    /// How long it may run (milliseconds).
    pub timeout_ms: u64,
}

/// One step of a running shutdown, streamed to every client following it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutdownEvent {
    /// The run's id in the catalog.
    pub run_id: i64,
    /// Time since the run started (milliseconds).
    pub elapsed_ms: u64,
    /// The phase the step belongs to.
    pub phase: ShutdownPhase,
    /// The service, job or hook the step is about; `None` for the phase itself.
    pub subject: Option<String>,
    /// Where the step is: `started`, `done`, `stopping`, `stopped`, `killed`, ...
    pub state: EventState,
    /// Details: timings, reasons.
    pub detail: String,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownOutcome {
    /// Every planned service is down.
    Completed,
    /// It ran to its end, but some services are still up (each is named).
    Incomplete,
    /// It was aborted and what it had stopped was started again.
    RolledBack,
    /// It was aborted without a rollback; what was stopped stays stopped.
    Halted,
}

impl ShutdownOutcome {
    /// The outcome's name for people and the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownOutcome::Completed => "completed",
            ShutdownOutcome::Incomplete => "incomplete",
            ShutdownOutcome::RolledBack => "rolled back",
            ShutdownOutcome::Halted => "halted",
        }
    }
}

named! {
    /// Where one service stands in a shutdown or its rollback.
    pub enum ServiceState {
        /// Up, as assessed.
        Running = "running",
        /// Down before the shutdown touched it.
        NotRunning = "not running",
        /// Its driver could not tell.
        Unknown = "unknown",
        /// Kept running on purpose (a dependant is still up, or its preserve failed).
        Held = "held",
        /// It stopped after its signal.
        Stopped = "stopped",
        /// It did not stop in time and was killed.
        Killed = "killed",
        /// It could not be stopped.
        NotStopped = "NOT STOPPED",
        /// It was stopped, and verify found it running again.
        UpAgain = "UP AGAIN",
        /// A rollback started it again.
        Started = "started",
        /// A rollback could not (or would not) start it again.
        NotStarted = "NOT STARTED",
    }
}

impl ServiceState {
    /// Whether this run left the service down (verify checks that it stays so).
    pub fn is_down(self) -> bool {
        matches!(
            self,
            ServiceState::Stopped | ServiceState::Killed | ServiceState::NotRunning
        )
    }
}

named! {
    /// The state a [`ShutdownEvent`] reports: a step's progress, a service's state, or
    /// (for the `done` phase) how the run ended. One flat list, repeating the service
    /// states, rather than [`ServiceState`] nested inside: bincode cannot read an
    /// untagged enum, and this way the wire and `--json` carry a plain name and a
    /// state read back compares equal to the one sent.
    pub enum EventState {
        /// A phase or step began.
        Started = "started",
        /// A step ended well.
        Done = "done",
        /// A step failed.
        Failed = "failed",
        /// A service was signalled and is being waited for.
        Stopping = "stopping",
        /// A rollback is starting a service.
        Starting = "starting",
        /// A started service is waited for until its health check passes.
        WaitingForHealth = "waiting for health",
        /// The run stopped at its safe point on an abort.
        Aborted = "aborted",
        /// See [`ServiceState::Running`].
        Running = "running",
        /// See [`ServiceState::NotRunning`].
        NotRunning = "not running",
        /// See [`ServiceState::Unknown`].
        Unknown = "unknown",
        /// See [`ServiceState::Held`].
        Held = "held",
        /// See [`ServiceState::Stopped`].
        Stopped = "stopped",
        /// See [`ServiceState::Killed`].
        Killed = "killed",
        /// See [`ServiceState::NotStopped`].
        NotStopped = "NOT STOPPED",
        /// See [`ServiceState::UpAgain`].
        UpAgain = "UP AGAIN",
        /// See [`ServiceState::NotStarted`].
        NotStarted = "NOT STARTED",
        /// See [`ShutdownOutcome::Completed`].
        Completed = "completed",
        /// See [`ShutdownOutcome::Incomplete`].
        Incomplete = "incomplete",
        /// See [`ShutdownOutcome::RolledBack`].
        RolledBack = "rolled back",
        /// See [`ShutdownOutcome::Halted`].
        Halted = "halted",
        /// See [`crate::RecoveryOutcome::Recovered`].
        Recovered = "recovered",
        /// See [`crate::RecoveryOutcome::NoGo`].
        NoGo = "no-go",
    }
}

impl From<crate::RecoveryOutcome> for EventState {
    fn from(outcome: crate::RecoveryOutcome) -> EventState {
        match outcome {
            crate::RecoveryOutcome::Recovered => EventState::Recovered,
            crate::RecoveryOutcome::Incomplete => EventState::Incomplete,
            crate::RecoveryOutcome::NoGo => EventState::NoGo,
            crate::RecoveryOutcome::Aborted => EventState::Aborted,
        }
    }
}

impl From<ServiceState> for EventState {
    fn from(state: ServiceState) -> EventState {
        match state {
            ServiceState::Running => EventState::Running,
            ServiceState::NotRunning => EventState::NotRunning,
            ServiceState::Unknown => EventState::Unknown,
            ServiceState::Held => EventState::Held,
            ServiceState::Stopped => EventState::Stopped,
            ServiceState::Killed => EventState::Killed,
            ServiceState::NotStopped => EventState::NotStopped,
            ServiceState::UpAgain => EventState::UpAgain,
            ServiceState::Started => EventState::Started,
            ServiceState::NotStarted => EventState::NotStarted,
        }
    }
}

impl From<ShutdownOutcome> for EventState {
    fn from(outcome: ShutdownOutcome) -> EventState {
        match outcome {
            ShutdownOutcome::Completed => EventState::Completed,
            ShutdownOutcome::Incomplete => EventState::Incomplete,
            ShutdownOutcome::RolledBack => EventState::RolledBack,
            ShutdownOutcome::Halted => EventState::Halted,
        }
    }
}

named! {
    /// Whether a shutdown `drctl status` mentions still has a coordinator.
    pub enum RunState {
        /// Its coordinator runs in this drd.
        Running = "running",
        /// The drd that ran it died or was stopped mid-run; it waits for
        /// `drctl shutdown --resume` or `drctl abort`.
        Interrupted = "interrupted",
    }
}

/// What happened to one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceResult {
    /// The service.
    pub name: String,
    /// Its stop level (0 stops first).
    pub level: u32,
    /// `stopped`, `killed`, `not running`, `NOT STOPPED`, `held`, `started`, ...
    pub state: ServiceState,
    /// How long its stop (or start) took (milliseconds).
    pub took_ms: Option<u64>,
    /// Why, for anything but a clean stop.
    pub detail: String,
}

/// The end of a shutdown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutdownReport {
    /// The run's id in the catalog.
    pub run_id: i64,
    /// What started it.
    pub trigger: ShutdownTrigger,
    /// Whether it ran with `--force`.
    pub force: bool,
    /// How it ended.
    pub outcome: ShutdownOutcome,
    /// How long it took (milliseconds).
    pub elapsed_ms: u64,
    /// Each planned service, in stop order.
    pub services: Vec<ServiceResult>,
    /// Everything that went wrong (failed preserve jobs and hooks, services that did
    /// not stop, services found up again in verify).
    pub problems: Vec<String>,
}

/// The answer to `drctl abort`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbortReport {
    /// The run that was aborted.
    pub run_id: i64,
    /// Where it was when it stopped (phase, and the last step).
    pub stopped_at: String,
    /// Whether what it stopped was started again.
    pub rolled_back: bool,
    /// The services started again, in the order they were started.
    pub started: Vec<ServiceResult>,
    /// What could not be started again, and why.
    pub problems: Vec<String>,
}

/// A shutdown that is running, or that drd was killed in the middle of; shown by
/// `drctl status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutdownStatus {
    /// The run's id in the catalog.
    pub run_id: i64,
    /// A shutdown, or a recovery.
    pub kind: crate::RunKind,
    /// What started it.
    pub trigger: ShutdownTrigger,
    /// When it started (Unix milliseconds).
    pub started_unix_ms: i64,
    /// Running, or interrupted when the drd that ran it died or was stopped.
    pub state: RunState,
    /// The last step recorded: phase, subject and state.
    pub last_step: String,
}
