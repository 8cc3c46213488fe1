//! What `drctl jobs`, `drctl prune` and `drctl backup emergency` get back.

use serde::{Deserialize, Serialize};

use crate::named::named;

named! {
    /// What started a backup run; the names are the catalog's `runs.trigger` column.
    pub enum RunTrigger {
        /// The job's schedule came due.
        Schedule = "schedule",
        /// A scheduled run was missed while drd was down; run once at start.
        CatchUp = "catch-up",
        /// `drctl backup --job NAME`.
        Manual = "manual",
        /// `drctl backup emergency`.
        Emergency = "emergency",
        /// The preserve phase of an emergency shutdown.
        ShutdownPreserve = "shutdown-preserve",
        /// A monitor's or deadman switch's `backup` or `emergency_backup` action.
        Monitor = "monitor",
    }
}

named! {
    /// How a backup run ended (or that it has not yet); the names are the catalog's
    /// `runs.outcome` column.
    pub enum RunOutcome {
        /// Still going.
        Running = "running",
        /// A snapshot was written.
        Ok = "ok",
        /// The backup failed.
        Failed = "failed",
        /// A `before` hook failed, so the backup did not run.
        Skipped = "skipped",
        /// The daemon stopped during the run; no snapshot was written.
        Cancelled = "cancelled",
        /// drd died during the run (found at the next start).
        Interrupted = "interrupted",
    }
}

/// One job as `drctl jobs` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job's name.
    pub name: String,
    /// Its schedule as written (`hourly`, a cron expression), if it has one.
    pub schedule: Option<String>,
    /// Whether `drctl backup emergency` runs it.
    pub critical: bool,
    /// Its priority (lower runs first).
    pub priority: i32,
    /// The tier backups land on.
    pub tier: String,
    /// The retention policy in words (`keep_daily=7, keep_within=30d`), or `keep all`.
    pub retention: String,
    /// Whether a run is going on now.
    pub running: bool,
    /// The newest run that wrote a snapshot.
    pub last_success: Option<RunInfo>,
    /// The newest run that failed, was skipped or was cut short.
    pub last_failure: Option<RunInfo>,
    /// When the scheduler runs it next (Unix ms), with the jitter applied.
    pub next_run_unix_ms: Option<i64>,
    /// When the newest good snapshot was taken (Unix ms).
    pub last_good_unix_ms: Option<i64>,
    /// Time since then: the data a loss now would cost (ms). `None` without any.
    pub rpo_now_ms: Option<i64>,
    /// The job's RPO target (ms), if set.
    pub rpo_target_ms: Option<i64>,
    /// True when the job has a target and its last good snapshot is older than it (or
    /// there is none).
    pub behind_rpo: bool,
    /// How far each of the job's offsite tiers is behind its landing tier.
    pub offsite: Vec<OffsiteLag>,
}

/// One offsite tier of a job: how far its copy is behind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OffsiteLag {
    /// The offsite tier.
    pub tier: String,
    /// Snapshots of the job on the landing tier that the copy lacks.
    pub missing: u64,
    /// Age of the oldest of those (ms): what losing the host now would cost if only
    /// this copy survived. 0 when the copy is in step.
    pub lag_ms: i64,
    /// When a copy to the tier last succeeded (Unix ms).
    pub last_ok_unix_ms: Option<i64>,
    /// Why copies to it are failing, while they are.
    pub last_error: Option<String>,
}

/// One recorded run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// What started it.
    pub trigger: RunTrigger,
    /// When it started (Unix ms).
    pub started_unix_ms: i64,
    /// When it ended (Unix ms).
    pub ended_unix_ms: Option<i64>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The snapshot written.
    pub snapshot: Option<String>,
    /// Why it failed (or notes on a success, such as a failed `after` hook).
    pub error: Option<String>,
}

/// What `drctl prune` did, or with `--dry-run` would do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// One entry per tier pruned.
    pub tiers: Vec<TierPrune>,
}

/// Retention and garbage collection on one tier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TierPrune {
    /// The tier.
    pub tier: String,
    /// Its location.
    pub location: String,
    /// Each job's snapshots and the policy's decision on them.
    pub jobs: Vec<JobRetention>,
    /// What garbage collection removed (`None` on a dry run).
    pub gc: Option<GcReport>,
    /// Notes such as stale locks broken.
    pub warnings: Vec<String>,
}

/// One job's retention decisions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRetention {
    /// The job.
    pub job: String,
    /// Its policy in words.
    pub policy: String,
    /// Its snapshots, newest first.
    pub snapshots: Vec<RetainedSnapshot>,
}

/// A snapshot and why it is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetainedSnapshot {
    /// The snapshot id.
    pub id: String,
    /// When it was taken (Unix ms).
    pub unix_ms: i64,
    /// The rules that keep it (`last`, `hourly`, `daily`, `weekly`, `monthly`,
    /// `yearly`, `within`); empty when it goes.
    pub kept_by: Vec<String>,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcReport {
    /// Packs deleted because nothing in them is used any more.
    pub packs_deleted: u64,
    /// Packs rewritten because most of their data is garbage.
    pub packs_repacked: u64,
    /// Packs no index listed (left by interrupted backups), deleted.
    pub orphan_packs_deleted: u64,
    /// Blobs no longer stored.
    pub blobs_removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
}

/// How one job fared in an emergency backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergencyRun {
    /// The job.
    pub job: String,
    /// Its priority.
    pub priority: i32,
    /// Ok or failed.
    pub outcome: RunOutcome,
    /// The snapshot written.
    pub snapshot: Option<String>,
    /// How long the run took (ms), waiting for an earlier run of the job included.
    pub elapsed_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// The outcome of `drctl backup emergency`: every critical job, in the order run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergencyReport {
    /// One entry per critical job.
    pub runs: Vec<EmergencyRun>,
    /// Wall time of the whole emergency backup (ms).
    pub elapsed_ms: u64,
}
