//! Per job: the last success, how long the last run took, what the last backup added,
//! the RPO now against its target, and whether a run is going on. Read with
//! `drd_backup::jobs::overview`, the function behind `drctl jobs`.
//!
//! The job's label is `backup_job`, not `job`: Prometheus gives every series the
//! `job` of its scrape, and would rename a `job` of drd's to `exported_job`.

use std::collections::{BTreeMap, HashSet};
use std::sync::PoisonError;

use async_trait::async_trait;
use drd_backup::jobs::{overview, runs};
use drd_proto::{BackupReport, JobInfo};
use drd_watch::Watch;
use prometheus_client::registry::Registry;

use crate::{gauges, seconds, set, Gauges, Result, Source};

/// The jobs area.
pub struct Jobs;

/// The job families, registered and waiting for values.
struct Families {
    last_success: Gauges,
    last_failure: Gauges,
    last_duration: Gauges,
    added: Gauges,
    files: Gauges,
    rpo: Gauges,
    rpo_target: Gauges,
    behind: Gauges,
    running: Gauges,
}

impl Families {
    fn register(registry: &mut Registry) -> Families {
        let mut g = |name, help| gauges(registry, name, help);
        Families {
            last_success: g(
                "drd_job_last_success_timestamp_seconds",
                "When the job's newest successful run ended, in Unix seconds",
            ),
            last_failure: g(
                "drd_job_last_failure_timestamp_seconds",
                "When the job's newest failed, skipped or cut-short run started, in Unix seconds",
            ),
            last_duration: g(
                "drd_job_last_duration_seconds",
                "How long the job's newest finished run took, successful or not",
            ),
            added: g(
                "drd_job_last_added_bytes",
                "Bytes the job's newest successful backup added to the repository, after \
                 dedup, compression and encryption",
            ),
            files: g(
                "drd_job_last_files",
                "Files in the snapshot of the job's newest successful backup",
            ),
            rpo: g(
                "drd_job_rpo_seconds",
                "Age of the job's newest good snapshot: the data a loss now would cost \
                 (absent while it has none)",
            ),
            rpo_target: g(
                "drd_job_rpo_target_seconds",
                "The job's RPO target (absent when the job sets no rpo)",
            ),
            behind: g(
                "drd_job_behind_rpo",
                "1 when the job has an RPO target and its newest good snapshot is older \
                 than it, or there is none; else 0",
            ),
            running: g("drd_job_running", "1 while a run of the job is going on"),
        }
    }

    /// Sets every family for one job; `report` is its newest successful backup's.
    fn fill(&self, job: &JobInfo, report: Option<&BackupReport>) {
        let l = [("backup_job", job.name.as_str())];
        if let Some(ok) = &job.last_success {
            set(
                &self.last_success,
                &l,
                seconds(ok.ended_unix_ms.unwrap_or(ok.started_unix_ms)),
            );
        }
        if let Some(failed) = &job.last_failure {
            set(&self.last_failure, &l, seconds(failed.started_unix_ms));
        }
        // The newest of the two runs that has ended.
        let newest = [&job.last_success, &job.last_failure]
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r.started_unix_ms, r.ended_unix_ms?)))
            .max();
        if let Some((started, ended)) = newest {
            set(&self.last_duration, &l, seconds((ended - started).max(0)));
        }
        if let Some(report) = report {
            #[allow(clippy::cast_precision_loss)]
            let (added, files) = (report.bytes_added as f64, report.snapshot.files as f64);
            set(&self.added, &l, added);
            set(&self.files, &l, files);
        }
        if let Some(rpo) = job.rpo_now_ms {
            set(&self.rpo, &l, seconds(rpo));
        }
        if let Some(target) = job.rpo_target_ms {
            set(&self.rpo_target, &l, seconds(target));
        }
        set(&self.behind, &l, f64::from(u8::from(job.behind_rpo)));
        set(&self.running, &l, f64::from(u8::from(job.running)));
    }
}

#[async_trait]
impl Source for Jobs {
    fn name(&self) -> &'static str {
        "jobs"
    }

    async fn collect(&self, watch: &Watch, registry: &mut Registry) -> Result<()> {
        let config = watch.core.config();
        let running: HashSet<String> = watch
            .backups
            .running_jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let jobs = overview::overview(&watch.core.catalog, &config, &running).await?;
        let stats = watch
            .core
            .catalog
            .call("read the last backups' figures", |c| runs::last_ok_stats(c))
            .await?;
        let reports = parse_reports(&stats);
        let families = Families::register(registry);
        for job in &jobs {
            families.fill(job, reports.get(&job.name));
        }
        Ok(())
    }
}

/// The stored backup reports that parse, by job; one that does not (written by
/// another drd version) leaves its job's bytes and files out rather than failing.
fn parse_reports(stats: &BTreeMap<String, String>) -> BTreeMap<String, BackupReport> {
    stats
        .iter()
        .filter_map(|(job, json)| Some((job.clone(), serde_json::from_str(json).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drd_proto::{RunInfo, RunOutcome, RunTrigger};

    fn run(started: i64, ended: i64, outcome: RunOutcome) -> RunInfo {
        RunInfo {
            trigger: RunTrigger::Manual,
            started_unix_ms: started,
            ended_unix_ms: Some(ended),
            outcome,
            snapshot: None,
            error: None,
        }
    }

    #[test]
    fn a_job_becomes_one_series_per_family_with_seconds_and_bytes() {
        let job = JobInfo {
            name: "db".to_owned(),
            schedule: Some("hourly".to_owned()),
            critical: true,
            priority: 0,
            tier: "local".to_owned(),
            retention: "keep all".to_owned(),
            running: false,
            last_success: Some(run(10_000, 12_500, RunOutcome::Ok)),
            last_failure: Some(run(1_000, 1_200, RunOutcome::Failed)),
            next_run_unix_ms: None,
            last_good_unix_ms: Some(10_000),
            rpo_now_ms: Some(60_000),
            rpo_target_ms: Some(3_600_000),
            behind_rpo: false,
            offsite: Vec::new(),
        };
        let report = BackupReport {
            snapshot: drd_proto::SnapshotInfo {
                id: "abc".to_owned(),
                job: "db".to_owned(),
                host: "h".to_owned(),
                unix_ms: 10_000,
                parent: None,
                size: 9_000,
                files: 3,
                tier: "local".to_owned(),
                damaged: None,
                file: None,
            },
            files_new: 3,
            files_changed: 0,
            files_unchanged: 0,
            bytes_read: 9_000,
            bytes_added: 4_096,
            warnings: Vec::new(),
            elapsed_ms: 2_500,
        };
        let stats: BTreeMap<String, String> = [
            ("db".to_owned(), serde_json::to_string(&report).unwrap()),
            ("other".to_owned(), r#"{"bytes_added": 1}"#.to_owned()),
        ]
        .into();
        let reports = parse_reports(&stats);
        assert!(!reports.contains_key("other"));
        let mut registry = Registry::default();
        Families::register(&mut registry).fill(&job, reports.get("db"));
        let text = crate::encode(&registry).unwrap();
        for line in [
            "drd_job_last_success_timestamp_seconds{backup_job=\"db\"} 12.5",
            "drd_job_last_failure_timestamp_seconds{backup_job=\"db\"} 1",
            "drd_job_last_duration_seconds{backup_job=\"db\"} 2.5",
            "drd_job_rpo_seconds{backup_job=\"db\"} 60",
            "drd_job_rpo_target_seconds{backup_job=\"db\"} 3600",
            "drd_job_behind_rpo{backup_job=\"db\"} 0",
            "drd_job_running{backup_job=\"db\"} 0",
            "drd_job_last_added_bytes{backup_job=\"db\"} 4096",
            "drd_job_last_files{backup_job=\"db\"} 3",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
