//! What `drctl test` and `drctl validate` show: drill runs with their measured RTO and
//! RPO, the report over a period, and the host's preparedness checks.

use serde::{Deserialize, Serialize};

use crate::named::named;

named! {
    /// How a drill (one scenario on one subject) ended.
    pub enum DrillOutcome {
        /// It did what it set out to and met its targets.
        Pass = "pass",
        /// It could not recover, found damage, or missed a target.
        Fail = "fail",
        /// A real backup or shutdown needed the host, or the daemon stopped.
        Cancelled = "cancelled",
    }
}

named! {
    /// A kind of drill.
    pub enum Scenario {
        /// Restore each job's newest snapshot (and a random recent one) into the
        /// sandbox, check every file against the snapshot; read-verify part of every tier.
        BackupValidation = "backup_validation",
        /// Restore each database source and check it (`PRAGMA integrity_check`, or the
        /// source's `drill_check` command).
        DatabaseRecovery = "database_recovery",
        /// Restore each job from each offsite tier alone, as if the local disk were gone.
        StorageFailure = "storage_failure",
        /// Stop and start each service marked `drill = true`, timed until healthy.
        ServiceRecovery = "service_recovery",
        /// Close a loopback port and time until the network monitor's logic sees it.
        NetworkPartition = "network_partition",
        /// A peer with no role is refused and audited; key files are private and open
        /// every tier.
        AuthOutage = "auth_outage",
        /// Each job's RPO now on every tier, and the RTO its last restore drill measured.
        RtoRpo = "rto_rpo",
    }
}

named! {
    /// A group of drills that share RTO and RPO targets (`[drills.targets.CATEGORY]`).
    pub enum Category {
        /// Databases restored and checked.
        Database = "database",
        /// Containers and units that serve others (docker, compose, systemd services).
        ServiceMesh = "service_mesh",
        /// Plain processes (the `process` driver).
        Agents = "agents",
        /// Losing the network.
        Network = "network",
        /// Backups, tiers and disks.
        Storage = "storage",
        /// Access control and keys.
        Authentication = "authentication",
    }
}

named! {
    /// What started a drill run.
    pub enum DrillTrigger {
        /// The drill loop, every `[drills] interval`.
        Schedule = "schedule",
        /// `drctl test run`.
        Manual = "manual",
    }
}

named! {
    /// A preparedness check's verdict.
    pub enum CheckStatus {
        /// Ready.
        Pass = "pass",
        /// Works, but someone should look.
        Warn = "warn",
        /// Not ready: recovery would fail or lose data here.
        Fail = "fail",
    }
}

/// One drill: a scenario run against one subject (a job, a tier, a service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillResult {
    /// The scenario.
    pub scenario: Scenario,
    /// Its category, whose targets apply.
    pub category: Category,
    /// What it drilled: `job app`, `job app from tier offsite`, `service api`.
    pub subject: String,
    /// How it ended.
    pub outcome: DrillOutcome,
    /// Measured recovery time: from the drill's start to a checked recovery (ms).
    pub rto_ms: Option<u64>,
    /// Measured data-loss window: the age of what it recovered from (ms).
    pub rpo_ms: Option<u64>,
    /// The RTO target it was held to (ms).
    pub target_rto_ms: Option<u64>,
    /// The RPO target it was held to (ms).
    pub target_rpo_ms: Option<u64>,
    /// What it is based on, or why it failed.
    pub evidence: String,
    /// How long the drill took (ms).
    pub duration_ms: u64,
}

/// One run of the drills: the scenarios chosen, each on every subject it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRunReport {
    /// Its number in the catalog.
    pub id: i64,
    /// What started it.
    pub trigger: DrillTrigger,
    /// When it started (Unix ms).
    pub started_unix_ms: i64,
    /// When it ended (Unix ms).
    pub finished_unix_ms: i64,
    /// Fail if any drill failed, else cancelled if any was, else pass.
    pub outcome: DrillOutcome,
    /// Every drill, in the order run.
    pub results: Vec<DrillResult>,
}

/// A scenario `drctl test list` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// The scenario, for `drctl test run --scenario`.
    pub scenario: Scenario,
    /// Its category (service_recovery's subjects each have their driver's).
    pub category: Category,
    /// What it does, in one line.
    pub description: String,
    /// Whether the drill loop runs it (`[drills] scenarios`).
    pub enabled: bool,
    /// What it would drill with the config in force: `job app`, `service api`.
    pub subjects: Vec<String>,
}

/// Per category, what the drills measured over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryReport {
    /// The category.
    pub category: Category,
    /// Its RTO target (ms).
    pub target_rto_ms: u64,
    /// Its RPO target (ms).
    pub target_rpo_ms: u64,
    /// Drills in the period (cancelled ones not counted).
    pub drills: u64,
    /// Of those, passed.
    pub passed: u64,
    /// The newest drill's measured RTO (ms).
    pub last_rto_ms: Option<u64>,
    /// The newest drill's measured RPO (ms).
    pub last_rpo_ms: Option<u64>,
    /// The worst measured RTO in the period (ms).
    pub worst_rto_ms: Option<u64>,
    /// The median measured RTO in the period (ms).
    pub median_rto_ms: Option<u64>,
    /// The worst measured RPO in the period (ms).
    pub worst_rpo_ms: Option<u64>,
    /// The median measured RPO in the period (ms).
    pub median_rpo_ms: Option<u64>,
    /// `better`, `worse` or `steady`: the median RTO of the newer half of the period
    /// against the older half; `-` with too few drills to say.
    pub trend: String,
    /// When the newest drill of the category ran (Unix ms).
    pub last_unix_ms: Option<i64>,
    /// When one last passed (Unix ms).
    pub last_pass_unix_ms: Option<i64>,
}

/// What `drctl test report` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The host it is about.
    pub host: String,
    /// The period's start (Unix ms).
    pub since_unix_ms: i64,
    /// When it was made (Unix ms).
    pub until_unix_ms: i64,
    /// Drill runs in the period.
    pub runs: u64,
    /// One row per category.
    pub categories: Vec<CategoryReport>,
    /// The period's failed drills, newest first (at most 20).
    pub failures: Vec<DrillResult>,
}

/// One line of `drctl validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadinessCheck {
    /// What was checked: `config`, `keys`, `tier offsite`, `job app rpo`.
    pub name: String,
    /// The verdict.
    pub status: CheckStatus,
    /// The evidence, and for a warn or fail what to do.
    pub detail: String,
}

/// What `drctl validate` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateReport {
    /// The host it is about.
    pub host: String,
    /// When it was made (Unix ms).
    pub at_unix_ms: i64,
    /// Every check, in a fixed order.
    pub checks: Vec<ReadinessCheck>,
}
