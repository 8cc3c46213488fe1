//! backup_validation: can each job really be restored? Per job, its newest snapshot is
//! restored from the landing tier (through `drctl restore`'s own path) into the
//! sandbox and every file checked against the snapshot's hashes; the RTO is the time
//! to that checked copy, the RPO the snapshot's age. One more snapshot, picked at
//! random from `[drills] random_within`, is restored the same way, so an old snapshot
//! that rotted is found before anyone needs it. Then `[drills] verify_percent` of
//! every tier's packs are read and re-hashed, each tier on its own, so damage the
//! restores did not touch (or that a copy hid from them) is found too.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use drd_core::config::Config;
use drd_proto::{Category, SnapshotSelector};
use drd_repo::VerifyOptions;
use rand::seq::SliceRandom;

use super::restoring::{self, blocking, job_target, restore_checked};
use super::{Drill, Finding};

/// How many of a tier's problems the evidence names (the rest are counted).
const PROBLEMS_SHOWN: usize = 3;

pub(super) async fn run(drill: &Drill) -> Vec<Finding> {
    let mut found = Vec::new();
    for (job, job_config) in &drill.config.config.jobs {
        if drill.cancelled() {
            return found;
        }
        let started = Instant::now();
        let subject = format!("job {job}");
        drill.step("backup_validation", format!("restore {subject}"));
        let opened = match restoring::open_landing(drill, job).await {
            Ok(opened) => opened,
            Err(why) => {
                found.push(Finding::failed(Category::Storage, subject, started, why));
                continue;
            }
        };
        let newest = match restore_checked(
            drill,
            &opened,
            job,
            SnapshotSelector::Latest,
            Vec::new(),
            &subject,
            None,
        )
        .await
        {
            Ok(checked) => checked,
            Err(why) => {
                found.push(Finding::failed(Category::Storage, subject, started, why));
                continue;
            }
        };
        let measured = restoring::measured(drill, started, &newest.snapshot);
        let newest_id = newest.snapshot.id.clone();
        found.push(Finding::measured(
            Category::Storage,
            subject,
            started,
            measured,
            job_target(drill, Category::Storage, job_config),
            newest.evidence.clone(),
        ));
        // The sandbox holds one restore at a time.
        drop(newest);

        if drill.cancelled() {
            return found;
        }
        let pick = {
            let (opened, job) = (opened.clone(), job.clone());
            let since = drill.drills.clock.now_ms() - ms(drill.config.config.drills.random_within);
            blocking(move || {
                let list = opened.repo.snapshot_list().map_err(|e| e.to_string())?;
                let older: Vec<_> = list
                    .snapshots
                    .into_iter()
                    .filter(|s| s.job == job && s.id != newest_id && s.time_ms >= since)
                    .collect();
                Ok(older.choose(&mut rand::thread_rng()).cloned())
            })
            .await
        };
        let started = Instant::now();
        match pick {
            Ok(None) => {}
            Ok(Some(snapshot)) => {
                let subject = format!("job {job} random {}", snapshot.short_id());
                drill.step("backup_validation", format!("restore {subject}"));
                let restored = restore_checked(
                    drill,
                    &opened,
                    job,
                    SnapshotSelector::Id(snapshot.id.clone()),
                    Vec::new(),
                    &subject,
                    None,
                )
                .await;
                found.push(match restored {
                    // An older snapshot is restored for its soundness, not its age:
                    // only the time to recover it is held to a target.
                    Ok(checked) => Finding::measured(
                        Category::Storage,
                        subject,
                        started,
                        (Some(started.elapsed()), None),
                        job_target(drill, Category::Storage, job_config),
                        checked.evidence.clone(),
                    ),
                    Err(why) => Finding::failed(Category::Storage, subject, started, why),
                });
            }
            Err(why) => found.push(Finding::failed(
                Category::Storage,
                format!("job {job} random"),
                started,
                format!("cannot list the snapshots to pick one at random: {why}"),
            )),
        }
    }
    for tier in tiers(&drill.config.config) {
        if drill.cancelled() {
            break;
        }
        found.push(verify_tier(drill, &tier).await);
    }
    found
}

/// Reads `[drills] verify_percent` of `tier`'s packs, the tier alone (no copy stands
/// in for a damaged pack, and the catalog's index cache is not used).
async fn verify_tier(drill: &Drill, tier: &str) -> Finding {
    let started = Instant::now();
    let subject = format!("tier {tier}");
    drill.step("backup_validation", format!("read-verify {subject}"));
    let percent = drill.config.config.drills.verify_percent;
    let (config, name) = (drill.config.clone(), tier.to_owned());
    let progress = drill.progress();
    let report = blocking(move || {
        let tier = config.tier(&name)?;
        let keys = config.keys().map_err(|e| e.to_string())?;
        let repo = drd_backup::tiers::open_uncached(tier, keys).map_err(|e| e.to_string())?;
        let options = VerifyOptions {
            read_data: true,
            subset_percent: Some(percent),
            job: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let task = format!("verify {name}");
        repo.verify(&options, &mut |p| {
            progress(drd_proto::Progress {
                task: task.clone(),
                done: p.packs_done,
                total: Some(p.packs_total),
                unit: drd_proto::ProgressUnit::Items,
                detail: format!("{} read", drd_proto::text::bytes(p.bytes_done)),
            });
        })
        .map_err(|e| e.to_string())
    })
    .await;
    let report = match report {
        Ok(report) => report,
        Err(why) => {
            return Finding::failed(
                Category::Storage,
                subject,
                started,
                format!("cannot verify tier {tier}: {why}"),
            )
        }
    };
    let read = format!(
        "read {} of {} pack(s) ({percent}% asked), {} blob(s) re-hashed",
        report.packs_read, report.packs_checked, report.blobs_read
    );
    if report.is_ok() {
        return Finding::measured(
            Category::Storage,
            subject,
            started,
            (None, None),
            drill.target(Category::Storage),
            format!("{read}: no damage"),
        );
    }
    let mut why: Vec<String> = report
        .problems
        .iter()
        .take(PROBLEMS_SHOWN)
        .map(|p| p.to_string().replace("\n    ", " "))
        .collect();
    if report.problems.len() > PROBLEMS_SHOWN {
        why.push(format!(
            "and {} more",
            report.problems.len() - PROBLEMS_SHOWN
        ));
    }
    Finding::failed(
        Category::Storage,
        subject,
        started,
        format!(
            "{read}: {} problem(s): {}; run `drctl verify --tier {tier} --read-data` to see \
             every one",
            report.problems.len(),
            why.join("; ")
        ),
    )
}

/// Every tier some job writes to, each once, by name.
fn tiers(config: &Config) -> BTreeSet<String> {
    config
        .jobs
        .values()
        .flat_map(|j| j.tiers.iter().cloned())
        .collect()
}

/// What backup_validation drills under `config`: each job, then each tier.
pub(super) fn subjects(config: &Config) -> Vec<String> {
    let jobs = config.jobs.keys().map(|j| format!("job {j}"));
    jobs.chain(tiers(config).into_iter().map(|t| format!("tier {t}")))
        .collect()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
