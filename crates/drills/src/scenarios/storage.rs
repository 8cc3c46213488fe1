//! storage_failure: could each job be recovered if its landing tier were lost? Each
//! offsite tier of each job is opened alone (no other tier stands in for what it
//! lacks, no cached index), and the job's newest snapshot there is restored into the
//! sandbox and checked file by file. The drill fails when that tier does not hold the
//! newest snapshot the landing tier has (replication behind, or a snapshot file lost),
//! saying which is missing and how old what the tier has is; the RPO is then what the
//! host would really lose.

use std::sync::Arc;
use std::time::Instant;

use drd_backup::backup::restore::{self, Opened};
use drd_core::config::Config;
use drd_proto::{Category, SnapshotSelector};
use drd_repo::{latest_of, Snapshot};

use super::restoring::{self, blocking, job_target, restore_checked};
use super::{Drill, Finding};

pub(super) async fn run(drill: &Drill) -> Vec<Finding> {
    let mut found = Vec::new();
    for (job, job_config) in &drill.config.config.jobs {
        let Some((landing, offsite)) = job_config.tiers.split_first() else {
            continue;
        };
        for tier in offsite {
            if drill.cancelled() {
                return found;
            }
            let started = Instant::now();
            let subject = format!("job {job} from tier {tier}");
            drill.step("storage_failure", format!("restore {subject}"));
            let outcome = from_tier(drill, job, landing, tier).await;
            found.push(match outcome {
                Ok((snapshot, evidence)) => Finding::measured(
                    Category::Storage,
                    subject,
                    started,
                    restoring::measured(drill, started, &snapshot),
                    job_target(drill, Category::Storage, job_config),
                    evidence,
                ),
                Err(why) => Finding::failed(Category::Storage, subject, started, why),
            });
        }
    }
    found
}

/// Restores `job`'s newest snapshot from `tier` alone, once it is known to be the
/// newest the `landing` tier has; returns it and the evidence.
async fn from_tier(
    drill: &Drill,
    job: &str,
    landing: &str,
    tier: &str,
) -> Result<(Snapshot, String), String> {
    let catalog = drill.drills.core.catalog.clone();
    let (config, names) = (
        drill.config.clone(),
        (job.to_owned(), landing.to_owned(), tier.to_owned()),
    );
    let (opened, newest, landing_newest) = blocking(move || {
        let (job, landing, tier) = names;
        let opened = restore::open_alone(&catalog, &config, &tier)
            .map_err(|e| format!("cannot open tier {tier} on its own: {e}"))?;
        let newest = newest_of(&opened, &job)?;
        let landing = restore::open_alone(&catalog, &config, &landing)
            .map_err(|e| format!("cannot read the landing tier {landing} to compare: {e}"))?;
        let landing_newest = newest_of(&landing, &job)?;
        Ok((Arc::new(opened), newest, landing_newest))
    })
    .await?;
    let now = drill.drills.clock.now_ms();
    let has = |s: &Option<Snapshot>| match s {
        Some(s) => format!(
            "its newest is {} taken {} ({})",
            s.short_id(),
            drd_proto::text::time(s.time_ms),
            drd_proto::text::ago(now, s.time_ms)
        ),
        None => "it holds no snapshot of the job".to_owned(),
    };
    let newest = match (newest, landing_newest) {
        (Some(newest), Some(landing_newest)) if newest.id == landing_newest.id => newest,
        (newest, Some(landing_newest)) => {
            return Err(format!(
                "tier {tier} lacks the newest snapshot {} of job {job} (taken {} on tier \
                 {landing}): {}; check replication with `drctl jobs` and the log",
                landing_newest.short_id(),
                drd_proto::text::time(landing_newest.time_ms),
                has(&newest)
            ))
        }
        (_, None) => {
            return Err(format!(
                "the landing tier {landing} holds no snapshot of job {job} to recover; run \
                 `drctl backup {job}`"
            ))
        }
    };
    let checked = restore_checked(
        drill,
        &opened,
        job,
        SnapshotSelector::Id(newest.id.clone()),
        Vec::new(),
        &format!("job {job} from tier {tier}"),
        None,
    )
    .await?;
    Ok((
        checked.snapshot.clone(),
        format!("{}; tier {tier} read alone", checked.evidence),
    ))
}

/// The newest readable snapshot of `job` on the tier `opened` holds.
fn newest_of(opened: &Opened, job: &str) -> Result<Option<Snapshot>, String> {
    let list = opened
        .repo
        .snapshot_list()
        .map_err(|e| format!("cannot list the snapshots on tier {}: {e}", opened.tier))?;
    Ok(latest_of(&list.snapshots, Some(job)).cloned())
}

/// What storage_failure drills under `config`: each job from each of its offsite
/// tiers.
pub(super) fn subjects(config: &Config) -> Vec<String> {
    config
        .jobs
        .iter()
        .flat_map(|(job, j)| {
            j.tiers
                .iter()
                .skip(1)
                .map(move |tier| format!("job {job} from tier {tier}"))
        })
        .collect()
}
