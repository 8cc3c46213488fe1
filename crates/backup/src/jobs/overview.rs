//! What `drctl jobs` shows of each job: schedule, last success and failure, next run,
//! the recovery point now against the job's RPO target, and how far each offsite copy
//! lags. Read from the catalog's run records, snapshot cache and replication table.
//!
//! The last good snapshot is the newest successful run in the catalog, or, for a job
//! whose runs were recorded by no catalog this daemon has (a lost catalog, backups
//! made elsewhere), the newest cached snapshot of the job on its landing tier.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use drd_core::catalog::{Catalog, CatalogError};
use drd_core::config::LoadedConfig;
use drd_proto::{JobInfo, OffsiteLag, RunInfo};

use super::runs::{self, RunRecord};
use super::{now_ms, retention, scheduler};
use crate::tiers::{replication, snapshot_cache};

/// A job's recovery point objective, as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpo {
    /// How old the last good snapshot is, in ms; none when there is none.
    pub now_ms: Option<i64>,
    /// The job's target, in ms, if it has one.
    pub target_ms: Option<i64>,
    /// True when the job has a target and its last good snapshot is older than that,
    /// or there is none.
    pub behind: bool,
}

impl Rpo {
    /// The RPO at `now` (Unix ms) of a job whose last good snapshot was taken at
    /// `last_good`, against `target`.
    pub fn at(last_good: Option<i64>, target: Option<Duration>, now: i64) -> Rpo {
        let now_ms = last_good.map(|at| (now - at).max(0));
        let target_ms = target.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let behind = match (target_ms, now_ms) {
            (Some(target), Some(age)) => age > target,
            (Some(_), None) => true,
            (None, _) => false,
        };
        Rpo {
            now_ms,
            target_ms,
            behind,
        }
    }
}

/// Every job in `config` with its schedule, last success and failure, next run, RPO
/// and offsite lag, as `drctl jobs` shows them; `running` names the jobs running now.
pub async fn overview(
    catalog: &Catalog,
    config: &LoadedConfig,
    running: &HashSet<String>,
) -> Result<Vec<JobInfo>, CatalogError> {
    let histories = catalog
        .call("read job history", |c| runs::histories(c))
        .await?;
    let landing: Vec<(String, String)> = config
        .config
        .jobs
        .iter()
        .filter_map(|(name, job)| Some((name.clone(), job.tiers.first()?.clone())))
        .collect();
    let newest_cached: BTreeMap<String, i64> = catalog
        .call("read snapshot cache", move |c| {
            let mut out = BTreeMap::new();
            for (job, tier) in landing {
                if let Some(newest) = snapshot_cache::list(c, &tier, Some(&job))?.last() {
                    out.insert(job, newest.unix_ms);
                }
            }
            Ok(out)
        })
        .await?;
    let now = now_ms();
    let with_offsite = replication::jobs_with_offsite(config);
    let mut lags: BTreeMap<String, Vec<OffsiteLag>> = catalog
        .call("read replication lag", move |c| {
            let mut out = BTreeMap::new();
            for (job, tiers) in with_offsite {
                let lags = replication::lag(c, &job, &tiers, now)?
                    .into_iter()
                    .map(|l| OffsiteLag {
                        tier: l.tier,
                        missing: l.missing,
                        lag_ms: l.lag_ms,
                        last_ok_unix_ms: l.last_ok_ms,
                        last_error: l.last_error,
                    })
                    .collect();
                out.insert(job, lags);
            }
            Ok(out)
        })
        .await?;
    let scheduled = scheduler::scheduled_jobs(&config.config);

    let mut out = Vec::new();
    for (name, job) in &config.config.jobs {
        let history = histories.get(name).cloned().unwrap_or_default();
        let last_good = [
            history.last_ok.as_ref().map(|r| r.started_ms),
            newest_cached.get(name).copied(),
        ]
        .into_iter()
        .flatten()
        .max();
        let rpo = Rpo::at(last_good, job.rpo, now);
        out.push(JobInfo {
            name: name.clone(),
            schedule: job.schedule.clone(),
            critical: job.critical,
            priority: job.priority,
            tier: job.tiers.first().cloned().unwrap_or_default(),
            retention: retention::describe(&job.retention_policy()),
            running: running.contains(name),
            last_success: history.last_ok.as_ref().map(run_info),
            last_failure: history.last_failure.as_ref().map(run_info),
            next_run_unix_ms: scheduled
                .iter()
                .find(|s| &s.name == name)
                .and_then(|s| s.next_run_ms(&chrono::Local, now)),
            last_good_unix_ms: last_good,
            rpo_now_ms: rpo.now_ms,
            rpo_target_ms: rpo.target_ms,
            behind_rpo: rpo.behind,
            offsite: lags.remove(name).unwrap_or_default(),
        });
    }
    Ok(out)
}

fn run_info(run: &RunRecord) -> RunInfo {
    RunInfo {
        trigger: run.trigger,
        started_unix_ms: run.started_ms,
        ended_unix_ms: run.ended_ms,
        outcome: run.outcome,
        snapshot: run.snapshot.clone(),
        error: run.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_job_is_behind_its_rpo_only_with_a_target_and_an_old_or_missing_snapshot() {
        let now = 10 * 3_600_000;
        // Half an hour old against one hour: in time.
        let fresh = Rpo::at(Some(now - 1_800_000), Some(HOUR), now);
        assert_eq!(
            fresh,
            Rpo {
                now_ms: Some(1_800_000),
                target_ms: Some(3_600_000),
                behind: false
            }
        );
        // Exactly at the target is still in time; a moment past is behind.
        assert!(!Rpo::at(Some(now - 3_600_000), Some(HOUR), now).behind);
        assert!(Rpo::at(Some(now - 3_600_001), Some(HOUR), now).behind);
        // Never backed up: behind a target, and no age to show.
        let never = Rpo::at(None, Some(HOUR), now);
        assert_eq!((never.now_ms, never.behind), (None, true));
        // No target: never behind, however old.
        assert!(!Rpo::at(Some(0), None, now).behind);
        assert!(!Rpo::at(None, None, now).behind);
        // A snapshot stamped ahead of this host's clock counts as new, not negative.
        assert_eq!(Rpo::at(Some(now + 5), Some(HOUR), now).now_ms, Some(0));
    }
}
