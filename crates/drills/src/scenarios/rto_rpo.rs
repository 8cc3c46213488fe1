//! rto_rpo: per job, the recovery point as it stands on every tier (the age of the
//! newest snapshot each tier really holds, read from the tier) against the job's
//! `rpo`, and the recovery time its last restore drill measured against the storage
//! target. Nothing here is computed from a target: a job never restored by a drill
//! has no RTO, and fails saying so.

use std::time::{Duration, Instant};

use drd_proto::Category;

use super::{ms, Drill, Finding};
use crate::store;

pub(super) async fn run(drill: &Drill) -> Vec<Finding> {
    let mut found = Vec::new();
    for (job, job_config) in &drill.config.config.jobs {
        if drill.cancelled() {
            break;
        }
        let started = Instant::now();
        let subject = format!("job {job}");
        drill.step("rto_rpo", subject.clone());
        let mut target = drill.target(Category::Storage);
        if let Some(rpo) = job_config.rpo {
            target.rpo = rpo;
        }
        let ages = match tier_ages(drill, job, &job_config.tiers).await {
            Ok(ages) => ages,
            Err(why) => {
                found.push(Finding::failed(Category::Storage, subject, started, why));
                continue;
            }
        };
        let mut evidence: Vec<String> = ages
            .iter()
            .map(|(tier, age)| match age {
                Some(age) => format!(
                    "tier {tier}: newest snapshot {} old",
                    drd_proto::text::measured(ms(*age))
                ),
                None => format!("tier {tier}: no snapshot of the job"),
            })
            .collect();
        let missing: Vec<&str> = ages
            .iter()
            .filter(|(_, age)| age.is_none())
            .map(|(tier, _)| tier.as_str())
            .collect();
        if !missing.is_empty() {
            found.push(Finding::failed(
                Category::Storage,
                subject,
                started,
                format!(
                    "{}; run `drctl backup {job}` and check replication with `drctl jobs`",
                    evidence.join("; ")
                ),
            ));
            continue;
        }
        let rpo = ages.iter().filter_map(|(_, age)| *age).max();
        let last_rto = {
            let subject = subject.clone();
            drill
                .drills
                .core
                .catalog
                .call("read the last restore drill", move |c| {
                    store::last_restore_rto(c, &subject)
                })
                .await
        };
        let rto = match last_rto {
            Ok(Some((rto_ms, at))) => {
                evidence.push(format!(
                    "last restore drill {} measured RTO {}",
                    drd_proto::text::time(at),
                    drd_proto::text::measured(rto_ms)
                ));
                Some(Duration::from_millis(rto_ms))
            }
            Ok(None) => {
                // The RPO was measured; the RTO never was, which is a failure of its own.
                let mut finding = Finding::measured(
                    Category::Storage,
                    subject,
                    started,
                    (None, rpo),
                    target,
                    evidence.join("; "),
                );
                finding.outcome = drd_proto::DrillOutcome::Fail;
                finding.evidence.push_str(
                    "; no restore drill of this job has measured an RTO yet: run `drctl test \
                     run --scenario backup_validation`",
                );
                found.push(finding);
                continue;
            }
            Err(err) => {
                found.push(Finding::failed(
                    Category::Storage,
                    subject,
                    started,
                    err.to_string(),
                ));
                continue;
            }
        };
        found.push(Finding::measured(
            Category::Storage,
            subject,
            started,
            (rto, rpo),
            target,
            evidence.join("; "),
        ));
    }
    found
}

/// Per tier of the job, how old its newest snapshot of the job is now.
async fn tier_ages(
    drill: &Drill,
    job: &str,
    tiers: &[String],
) -> Result<Vec<(String, Option<Duration>)>, String> {
    let config = drill.config.clone();
    let (job, tiers) = (job.to_owned(), tiers.to_vec());
    let now = drill.drills.clock.now_ms();
    tokio::task::spawn_blocking(move || {
        let keys = config.keys().map_err(|e| e.to_string())?;
        let mut ages = Vec::new();
        for name in tiers {
            let tier = config.tier(&name)?;
            let repo = drd_backup::tiers::open_uncached(tier, keys)
                .map_err(|e| format!("tier {name}: {e}"))?;
            let list = repo
                .snapshot_list()
                .map_err(|e| format!("tier {name}: {e}"))?;
            let newest = drd_repo::latest_of(&list.snapshots, Some(&job));
            let age = newest.map(|s| Duration::from_millis((now - s.time_ms).max(0) as u64));
            ages.push((name, age));
        }
        Ok(ages)
    })
    .await
    .map_err(|e| format!("the RPO check stopped: {e}"))?
}
