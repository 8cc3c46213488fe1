//! The scenarios: what each drills, in which category, and the one way each reports
//! what it measured ([`Finding`]).
//!
//! A scenario runs every subject it has (each job, tier, service) and returns one
//! finding per subject. It checks [`Drill::cancelled`] between subjects: a drill
//! yields at its next safe point (a restore under way finishes first, into the
//! sandbox, which is then removed).

mod auth;
mod backup;
mod database;
mod network;
mod restoring;
mod rto_rpo;
mod service;
mod storage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use drd_core::config::drills::Target;
use drd_core::config::{Config, DriverKind, LoadedConfig};
use drd_proto::{Category, DrillOutcome, Progress, ProgressUnit, Scenario};
use tokio_util::sync::CancellationToken;

use crate::sandbox::Sandbox;
use crate::{Drills, ProgressFn};

/// What a scenario works with.
pub(crate) struct Drill {
    /// The daemon's layers.
    pub drills: Arc<Drills>,
    /// The config the run started with (a reload mid-run does not change it).
    pub config: Arc<LoadedConfig>,
    /// Where restores go.
    pub sandbox: Sandbox,
    /// Cancelled when real work needs the host, or the daemon stops.
    pub token: CancellationToken,
    progress: ProgressFn,
    /// The newest shutdown or recovery launched when the run began.
    shutdown_baseline: Option<(drd_proto::RunKind, i64)>,
}

impl Drill {
    pub(crate) fn new(
        drills: Arc<Drills>,
        config: Arc<LoadedConfig>,
        sandbox: Sandbox,
        token: CancellationToken,
        progress: ProgressFn,
    ) -> Drill {
        Drill {
            shutdown_baseline: drills.shutdowns.last_launched(),
            drills,
            config,
            sandbox,
            token,
            progress,
        }
    }

    /// Whether the run was cancelled: stop before the next subject.
    pub fn cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The shutdown or recovery launched since the run began, if one was: it wants
    /// the services it stops down, so a drill must not start them again.
    pub fn shutdown_started(&self) -> Option<String> {
        self.drills
            .shutdowns
            .last_launched()
            .filter(|launched| Some(*launched) != self.shutdown_baseline)
            .map(|(kind, run_id)| format!("{} #{run_id}", kind.as_str()))
    }

    /// The targets `category` is held to.
    pub fn target(&self, category: Category) -> Target {
        self.config.config.drills.target(category)
    }

    /// Tells the client what the drill is doing now (a step, not a byte count).
    pub fn step(&self, task: &str, detail: String) {
        (self.progress)(Progress {
            task: task.to_owned(),
            done: 0,
            total: None,
            unit: ProgressUnit::Items,
            detail,
        });
    }

    /// The progress callback itself, for restores and verifies that report bytes.
    pub fn progress(&self) -> ProgressFn {
        self.progress.clone()
    }
}

/// `d` in whole milliseconds, as results keep it.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What one drill of one subject found.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub category: Category,
    pub subject: String,
    pub outcome: DrillOutcome,
    /// Measured: from the drill's start to a checked recovery.
    pub rto: Option<Duration>,
    /// Measured: the age of what it recovered from.
    pub rpo: Option<Duration>,
    /// The RTO it was held to, if any.
    pub target_rto: Option<Duration>,
    /// The RPO it was held to, if any.
    pub target_rpo: Option<Duration>,
    pub evidence: String,
    pub duration: Duration,
}

impl Finding {
    /// A drill that could not recover at all: `why` says what went wrong.
    pub fn failed(category: Category, subject: String, started: Instant, why: String) -> Finding {
        Finding {
            category,
            subject,
            outcome: DrillOutcome::Fail,
            rto: None,
            rpo: None,
            target_rto: None,
            target_rpo: None,
            evidence: why,
            duration: started.elapsed(),
        }
    }

    /// A drill that recovered: it passes when what was measured is within `target`
    /// (a measure left `None` is not held to its target), and the evidence then ends
    /// with each target missed.
    pub fn measured(
        category: Category,
        subject: String,
        started: Instant,
        (rto, rpo): (Option<Duration>, Option<Duration>),
        target: Target,
        evidence: String,
    ) -> Finding {
        let mut evidence = evidence;
        let mut outcome = DrillOutcome::Pass;
        for (what, measured, limit) in [("RTO", rto, target.rto), ("RPO", rpo, target.rpo)] {
            if let Some(measured) = measured.filter(|m| *m > limit) {
                outcome = DrillOutcome::Fail;
                evidence.push_str(&format!(
                    "; {what} {} is over the target {}",
                    drd_proto::text::measured(measured.as_millis() as u64),
                    drd_proto::text::measured(limit.as_millis() as u64),
                ));
            }
        }
        Finding {
            category,
            subject,
            outcome,
            rto,
            rpo,
            target_rto: rto.map(|_| target.rto),
            target_rpo: rpo.map(|_| target.rpo),
            evidence,
            duration: started.elapsed(),
        }
    }
}

/// Runs `scenario` on every subject it has.
pub(crate) async fn run(scenario: Scenario, drill: &Drill) -> Vec<Finding> {
    match scenario {
        Scenario::BackupValidation => backup::run(drill).await,
        Scenario::DatabaseRecovery => database::run(drill).await,
        Scenario::StorageFailure => storage::run(drill).await,
        Scenario::ServiceRecovery => service::run(drill).await,
        Scenario::NetworkPartition => network::run(drill).await,
        Scenario::AuthOutage => auth::run(drill).await,
        Scenario::RtoRpo => rto_rpo::run(drill).await,
    }
}

/// The category whose targets a scenario's drills are held to. service_recovery's
/// drills each take their service's: `process` services are agents, the rest the
/// service mesh.
pub(crate) fn category(scenario: Scenario) -> Category {
    match scenario {
        Scenario::BackupValidation | Scenario::StorageFailure | Scenario::RtoRpo => {
            Category::Storage
        }
        Scenario::DatabaseRecovery => Category::Database,
        Scenario::ServiceRecovery => Category::ServiceMesh,
        Scenario::NetworkPartition => Category::Network,
        Scenario::AuthOutage => Category::Authentication,
    }
}

/// A drilled service's category, by its driver.
pub(crate) fn service_category(driver: DriverKind) -> Category {
    match driver {
        DriverKind::Process => Category::Agents,
        DriverKind::Docker | DriverKind::Compose | DriverKind::Systemd => Category::ServiceMesh,
    }
}

/// The categories a scenario's drills may be in.
pub(crate) fn categories(scenario: Scenario) -> &'static [Category] {
    match scenario {
        Scenario::ServiceRecovery => &[Category::ServiceMesh, Category::Agents],
        other => match category(other) {
            Category::Storage => &[Category::Storage],
            Category::Database => &[Category::Database],
            Category::Network => &[Category::Network],
            Category::Authentication => &[Category::Authentication],
            Category::ServiceMesh | Category::Agents => &[],
        },
    }
}

/// One line on what a scenario does, for `drctl test list`.
pub(crate) fn describe(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::BackupValidation => {
            "restore each job's newest snapshot and a random recent one into the sandbox, \
             check every file against the snapshot; read-verify part of every tier"
        }
        Scenario::DatabaseRecovery => {
            "restore each SQLite source and run PRAGMA integrity_check; run each command \
             source's drill_check on its restored output"
        }
        Scenario::StorageFailure => {
            "restore each job from each offsite tier alone, as if the local disk were gone"
        }
        Scenario::ServiceRecovery => {
            "stop and start each service marked drill = true, timed until its health check \
             passes"
        }
        Scenario::NetworkPartition => {
            "close a loopback port and time until the network monitor's logic sees the \
             partition; the partition action in dry-run"
        }
        Scenario::AuthOutage => {
            "a peer with no role is refused over the socket and audited; key files are \
             private and open every tier"
        }
        Scenario::RtoRpo => {
            "each job's RPO now on every tier against its rpo, and the RTO of its last \
             restore drill"
        }
    }
}

/// What a scenario would drill under `config`.
pub(crate) fn subjects(scenario: Scenario, config: &Config) -> Vec<String> {
    let jobs = || config.jobs.keys().map(|j| format!("job {j}")).collect();
    match scenario {
        Scenario::RtoRpo => jobs(),
        Scenario::BackupValidation => backup::subjects(config),
        Scenario::DatabaseRecovery => database::subjects(config),
        Scenario::StorageFailure => storage::subjects(config),
        Scenario::ServiceRecovery => config
            .services
            .iter()
            .filter(|(_, s)| s.drill)
            .map(|(name, _)| format!("service {name}"))
            .collect(),
        Scenario::NetworkPartition => vec!["loopback port".to_owned()],
        Scenario::AuthOutage => vec!["socket".to_owned(), "keys".to_owned()],
    }
}
