//! `jobs`: every configured job with its schedule, last success and failure, next run,
//! RPO now against its target, and how far each offsite copy lags.
//!
//! The last good snapshot is the newest successful run in the catalog, or, for a job
//! whose runs were recorded by no catalog this daemon has (a lost catalog, backups
//! made elsewhere), the newest cached snapshot of the job on its landing tier.

use std::collections::{BTreeMap, HashSet};
use std::sync::PoisonError;

use drd_proto::{JobInfo, OffsiteLag, Reply, RunInfo};

use super::{internal, Ctx, HandlerResult};
use crate::tiers::snapshot_cache as cache;
use crate::jobs::runs::{self, RunRecord};
use crate::jobs::{now_ms, retention, scheduler};
use crate::tiers::replication;

pub(super) async fn jobs(ctx: &Ctx) -> HandlerResult {
    let config = ctx.shared.config();
    let histories = ctx
        .shared
        .catalog
        .call("read job history", |c| runs::histories(c))
        .await
        .map_err(|e| internal(&e))?;
    let landing: Vec<(String, String)> = config
        .config
        .jobs
        .iter()
        .filter_map(|(name, job)| Some((name.clone(), job.tiers.first()?.clone())))
        .collect();
    let newest_cached: BTreeMap<String, i64> = ctx
        .shared
        .catalog
        .call("read snapshot cache", move |c| {
            let mut out = BTreeMap::new();
            for (job, tier) in landing {
                if let Some(newest) = cache::list(c, &tier, Some(&job))?.last() {
                    out.insert(job, newest.unix_ms);
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| internal(&e))?;
    let now = now_ms();
    let with_offsite: Vec<(String, Vec<String>)> = config
        .config
        .jobs
        .iter()
        .filter(|(_, job)| job.tiers.len() > 1)
        .map(|(name, job)| (name.clone(), job.tiers.clone()))
        .collect();
    let mut lags: BTreeMap<String, Vec<OffsiteLag>> = ctx
        .shared
        .catalog
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
        .await
        .map_err(|e| internal(&e))?;
    let running: HashSet<String> = ctx
        .shared
        .running_jobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
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
        let rpo_now = last_good.map(|at| (now - at).max(0));
        let rpo_target = job
            .rpo
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let behind_rpo = match (rpo_target, rpo_now) {
            (Some(target), Some(now)) => now > target,
            (Some(_), None) => true,
            (None, _) => false,
        };
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
            rpo_now_ms: rpo_now,
            rpo_target_ms: rpo_target,
            behind_rpo,
            offsite: lags.remove(name).unwrap_or_default(),
        });
    }
    Ok(Reply::Jobs(out))
}

fn run_info(run: &RunRecord) -> RunInfo {
    RunInfo {
        trigger: run.trigger.clone(),
        started_unix_ms: run.started_ms,
        ended_unix_ms: run.ended_ms,
        outcome: run.outcome.as_str().to_owned(),
        snapshot: run.snapshot.clone(),
        error: run.error.clone(),
    }
}
