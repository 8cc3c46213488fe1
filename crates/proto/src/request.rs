//! Requests a client may send, each with the role it needs.

use serde::{Deserialize, Serialize};

use crate::{Role, SnapshotSelector};

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
    /// Run a backup job now and report the snapshot it wrote.
    Backup {
        /// The job, as named in the config.
        job: String,
    },
    /// List snapshots, oldest first.
    Backups {
        /// Only this job's.
        job: Option<String>,
        /// The snapshots on this tier (an offsite copy, say) instead of the landing
        /// tiers.
        tier: Option<String>,
    },
    /// Restore a snapshot (or part of it) into a folder.
    Restore {
        /// Which snapshot.
        selector: SnapshotSelector,
        /// The job whose repository to read (and whose snapshots `Latest` / `At` pick
        /// from); needed when jobs use different repositories.
        job: Option<String>,
        /// Read from this tier (an offsite copy when the local one is lost); by default
        /// the job's landing tier, falling back to its copies blob by blob.
        tier: Option<String>,
        /// Paths inside the snapshot to restore; empty for all of it.
        paths: Vec<String>,
        /// The folder to restore into (absolute).
        target: String,
        /// Allow a non-empty target.
        overwrite: bool,
        /// With `Latest` / `At`: restore the newest readable snapshot even when a
        /// damaged snapshot file might be newer (without it, that is refused).
        allow_older: bool,
    },
    /// Check repositories: structure, and with `read_data` every blob's content.
    Verify {
        /// Only this job's repository and snapshots; all jobs' when `None`.
        job: Option<String>,
        /// Only this tier (a job's offsite copy, say); by default the landing tiers.
        tier: Option<String>,
        /// Decrypt, decompress and re-hash blobs.
        read_data: bool,
        /// With `read_data`, read only this percentage of the data.
        subset_percent: Option<f64>,
    },
    /// Stop the configured services in dependency order (or, with `dry_run`, only
    /// say how), streaming each step.
    Shutdown {
        /// Why.
        trigger: crate::ShutdownTrigger,
        /// Skip preserve and drain, and kill after the short grace.
        force: bool,
        /// Return the plan and touch nothing.
        dry_run: bool,
        /// Only these services (and what depends on them); all when empty.
        only: Vec<String>,
        /// Words for the audit log.
        reason: Option<String>,
        /// Carry on with the shutdown that drd was killed in the middle of.
        resume: bool,
    },
    /// Stop a running (or interrupted) shutdown at its next safe point.
    Abort {
        /// Start again what it stopped, in dependency order.
        rollback: bool,
    },
    /// Every job with its schedule, last success and failure, next run and RPO.
    Jobs,
    /// Apply each job's retention and collect unreferenced data.
    Prune {
        /// Only this job's snapshots (garbage collection still covers its tier).
        job: Option<String>,
        /// Say what would go and why the rest stays; change nothing.
        dry_run: bool,
    },
    /// Run every critical job now, in priority order.
    EmergencyBackup,
    /// Rebuild repository indexes from the pack headers: index every pack that no
    /// readable index file lists, then remove the index files that are damaged.
    RepairIndex {
        /// Only this job's repository; all jobs' when `None`.
        job: Option<String>,
        /// Only this tier (a job's offsite copy, say); by default the landing tiers.
        tier: Option<String>,
    },
    /// A ping for a deadman switch (`drctl heartbeat NAME`). Operators may ping any
    /// switch; a switch's own `users` / `groups` may ping only it.
    Heartbeat {
        /// The switch, as in `[deadman.NAME]`.
        name: String,
        /// Success, start or failure.
        kind: crate::PingKind,
        /// The job's exit code, when the ping came from `--exit-code N`.
        exit_code: Option<i32>,
        /// The caller's id for this run, to pair a start with its end.
        run_id: Option<String>,
    },
    /// Every deadman switch with its state, newest ping and next deadline.
    Deadman,
    /// Pause a deadman switch (it acts on nothing) or resume it (new until its next
    /// ping).
    DeadmanPause {
        /// The switch.
        name: String,
        /// Pause (`true`) or resume (`false`).
        pause: bool,
    },
    /// Every monitor check with its state, value, thresholds and last decision.
    Monitors,
    /// Bring services back after a shutdown: initiate, validate, optionally restore
    /// data, start level by level waiting for health, verify, measure the RTO.
    Recover {
        /// Return the plan and the go / no-go checks; start nothing.
        dry_run: bool,
        /// Only these services (and what depends on them); by default what the
        /// shutdown stopped.
        only: Vec<String>,
        /// The shutdown to recover from; by default the newest completed one.
        from_shutdown: Option<i64>,
        /// Carry on with the recovery that drd was killed in the middle of.
        resume: bool,
        /// Restore each service's preserve jobs' snapshot before it starts.
        restore_data: bool,
        /// With `restore_data`: the newest snapshot at or before this time instead
        /// of the one the shutdown took (RFC 3339 or `YYYY-MM-DD HH:MM:SS`).
        at: Option<String>,
    },
    /// Past shutdowns and recoveries, newest first.
    Shutdowns {
        /// At most this many.
        limit: u32,
    },
    /// Open alerts with their deliveries and escalation.
    Alerts {
        /// Resolved ones too (the newest 50).
        all: bool,
    },
    /// Acknowledge an alert: its escalation stops (it still resolves when it clears).
    AlertAck {
        /// The alert's number, as `drctl alerts` shows it.
        id: i64,
        /// Why, or what is being done.
        comment: Option<String>,
    },
    /// Send a synthetic alert (firing, then resolved) to one receiver now, past the
    /// outbox, and report what it answered.
    AlertTest {
        /// The receiver, as in `[alerts.receivers.NAME]`.
        receiver: String,
    },
    /// Run drills now, with progress, and answer with the run.
    DrillRun {
        /// Only this category's drills.
        category: Option<crate::Category>,
        /// Only this scenario.
        scenario: Option<crate::Scenario>,
    },
    /// The drill scenarios, their categories and what each would drill.
    DrillList,
    /// Per category, what the drills measured since a time.
    DrillReport {
        /// The period's start (Unix ms).
        since_unix_ms: i64,
    },
    /// The host's preparedness, check by check.
    Validate,
}

impl Request {
    /// The least role allowed to make this request.
    pub fn required_role(&self) -> Role {
        match self {
            Request::Status { .. }
            | Request::AuditList { .. }
            | Request::AuditVerify
            | Request::Backups { .. }
            | Request::Jobs
            | Request::Deadman
            | Request::Monitors
            | Request::Shutdowns { .. }
            | Request::Alerts { .. }
            | Request::DrillList
            | Request::DrillReport { .. }
            | Request::Validate => Role::Viewer,
            Request::DrillRun { .. } => Role::Operator,
            Request::AlertTest { .. } => Role::Operator,
            Request::AlertAck { .. } => Role::Responder,
            Request::Heartbeat { .. } | Request::DeadmanPause { .. } => Role::Operator,
            Request::Prune { .. } | Request::EmergencyBackup | Request::RepairIndex { .. } => {
                Role::Operator
            }
            Request::Reload | Request::Backup { .. } | Request::Verify { .. } => Role::Operator,
            Request::Restore { .. } => Role::Responder,
            Request::Shutdown { .. } | Request::Abort { .. } | Request::Recover { .. } => {
                Role::Responder
            }
        }
    }

    /// A short name for messages and the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status { .. } => "status",
            Request::AuditList { .. } => "audit",
            Request::AuditVerify => "audit verify",
            Request::Reload => "reload",
            Request::Backup { .. } => "backup",
            Request::Backups { .. } => "backups",
            Request::Restore { .. } => "restore",
            Request::Verify { .. } => "verify",
            Request::Shutdown { .. } => "shutdown",
            Request::Abort { .. } => "abort",
            Request::Jobs => "jobs",
            Request::Prune { .. } => "prune",
            Request::EmergencyBackup => "backup emergency",
            Request::RepairIndex { .. } => "repair index",
            Request::Heartbeat { .. } => "heartbeat",
            Request::Deadman => "deadman",
            Request::DeadmanPause { pause: true, .. } => "deadman pause",
            Request::DeadmanPause { pause: false, .. } => "deadman resume",
            Request::Monitors => "monitors",
            Request::Recover { .. } => "recover",
            Request::Shutdowns { .. } => "shutdowns",
            Request::Alerts { .. } => "alerts",
            Request::AlertAck { .. } => "alerts ack",
            Request::AlertTest { .. } => "alerts test",
            Request::DrillRun { .. } => "test run",
            Request::DrillList => "test list",
            Request::DrillReport { .. } => "test report",
            Request::Validate => "validate",
        }
    }

    /// Whether the request changes state, and so is audited when it runs (refusals are
    /// audited whatever the request).
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Request::Reload
                | Request::Backup { .. }
                | Request::Restore { .. }
                | Request::Shutdown { .. }
                | Request::Abort { .. }
                | Request::Recover { .. }
                | Request::Prune { .. }
                | Request::EmergencyBackup
                | Request::RepairIndex { .. }
                | Request::Heartbeat { .. }
                | Request::DeadmanPause { .. }
                | Request::AlertAck { .. }
                | Request::AlertTest { .. }
                | Request::DrillRun { .. }
        )
    }
}
