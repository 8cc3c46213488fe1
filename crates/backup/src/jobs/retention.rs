//! Retention: forget the snapshots no rule of a job's policy keeps, then
//! garbage-collect the data only they used, on every tier of the job (the landing tier
//! first, then each offsite copy on its own; deletions are never mirrored).
//!
//! The rules and the garbage collection are drd-repo's (`Repository::forget`,
//! `Repository::prune`): prune holds the repository's exclusive lock and removes data
//! in the crash-safe order (new packs, then the new index, then old index files, then
//! old packs), so data a kept snapshot needs is never removed, even if drd is killed
//! part way. This module picks the tiers and policies, and turns the engine's answers
//! into the report `drctl prune` prints.
//!
//! A damaged snapshot file is neither counted by the rules nor removed (it is evidence,
//! and what it held is unknown); it is named in the report's warnings and the log. While
//! one is damaged and no offsite copy of it is intact, garbage collection on its tier
//! deletes nothing, since the data it refers to cannot be known.
//!
//! Everything here but [`apply_after_run`] is blocking.

use std::collections::BTreeMap;

use drd_core::config::LoadedConfig;
use drd_proto::{GcReport, JobRetention, PruneReport, RetainedSnapshot, TierPrune};
use drd_repo::{PruneOptions, Repository, Retention};

use crate::backup::BackupError;
use crate::tiers::TierOpener;

/// A policy in words, like `keep_last=3, keep_within=30d`, or `keep all`.
pub fn describe(policy: &Retention) -> String {
    let mut parts = Vec::new();
    for (name, n) in [
        ("keep_last", policy.keep_last),
        ("keep_hourly", policy.keep_hourly),
        ("keep_daily", policy.keep_daily),
        ("keep_weekly", policy.keep_weekly),
        ("keep_monthly", policy.keep_monthly),
        ("keep_yearly", policy.keep_yearly),
    ] {
        if n > 0 {
            parts.push(format!("{name}={n}"));
        }
    }
    if let Some(within) = policy.keep_within {
        parts.push(format!(
            "keep_within={}",
            humantime::format_duration(within)
        ));
    }
    if parts.is_empty() {
        "keep all".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Applies `job`'s `policy` on its landing tier after a run, then collects garbage if
/// anything was forgotten. Returns a line for the log and the audit entry.
pub async fn apply_after_run(
    tiers: &TierOpener,
    config: &std::sync::Arc<LoadedConfig>,
    job: &str,
    policy: &Retention,
) -> Result<String, BackupError> {
    let (tiers, config, job, policy) = (
        tiers.clone(),
        config.clone(),
        job.to_owned(),
        policy.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let report = prune(&tiers, &config, Some(&job), false, Some(&policy))?;
        let removed: usize = report
            .tiers
            .iter()
            .flat_map(|t| &t.jobs)
            .flat_map(|j| &j.snapshots)
            .filter(|s| s.kept_by.is_empty())
            .count();
        let freed: u64 = report
            .tiers
            .iter()
            .filter_map(|t| t.gc.as_ref())
            .map(|g| g.bytes_freed)
            .sum();
        let mut line = format!("retention forgot {removed} snapshots and freed {freed} bytes");
        let notes: Vec<&String> = report.tiers.iter().flat_map(|t| &t.warnings).collect();
        if let Some(first) = notes.first() {
            line.push_str(&format!("; {} note(s), first: {first}", notes.len()));
        }
        tracing::info!(job, removed, freed, "retention applied");
        Ok(line)
    })
    .await
    .unwrap_or_else(|join| {
        Err(BackupError::Repo(drd_repo::Error::Internal(format!(
            "the retention task failed: {join}"
        ))))
    })
}

/// Applies retention on every tier, landing and offsite (only `job`'s, if named): for
/// each job on the tier, its policy (`policy` overrides the configured one) decides which of its
/// snapshots stay; then unreferenced data is collected. A dry run reports the
/// decisions and changes nothing. Snapshots of jobs the config does not name are
/// left alone.
pub fn prune<'a>(
    tiers: &TierOpener,
    config: &'a LoadedConfig,
    job: Option<&'a str>,
    dry_run: bool,
    policy: Option<&Retention>,
) -> Result<PruneReport, BackupError> {
    let keys = config.keys()?;
    // Tier -> the jobs that write to it (only `job` when named). Offsite copies apply
    // the same rules on their own (rather than mirroring deletions, which would carry a
    // mass deletion on the host to every copy); landing tiers go first.
    let mut by_tier: BTreeMap<(bool, &str), Vec<&str>> = BTreeMap::new();
    let mut add = |name: &'a str, tiers: &'a [String]| {
        for (i, tier) in tiers.iter().enumerate() {
            by_tier.entry((i > 0, tier)).or_default().push(name);
        }
    };
    if let Some(name) = job {
        let target = crate::backup::job_target(config, name)?;
        add(target.name, &target.job.tiers);
    } else {
        for (name, job) in &config.config.jobs {
            add(name, &job.tiers);
        }
    }
    let mut report = PruneReport {
        dry_run,
        tiers: Vec::new(),
    };
    for ((offsite, tier_name), jobs) in by_tier {
        let Some(tier) = config.config.tiers.get(tier_name) else {
            continue;
        };
        // A landing tier reads through its offsite copies, so garbage collection can
        // learn what a damaged snapshot file refers to from an intact copy.
        let opened = if offsite {
            tiers.open(tier, keys)
        } else {
            tiers.open_for_read(config, tier_name)
        };
        let repo = match opened {
            Ok(repo) => repo,
            // An offsite copy that cannot be reached (or holds nothing yet) is pruned
            // next time; it must not stop the landing tier's retention.
            Err(err) if offsite => {
                report.tiers.push(TierPrune {
                    tier: tier_name.to_owned(),
                    location: tier.location(),
                    jobs: Vec::new(),
                    gc: None,
                    warnings: vec![format!("offsite tier not pruned this time: {err}")],
                });
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        let mut out = TierPrune {
            tier: tier_name.to_owned(),
            location: tier.location(),
            jobs: Vec::new(),
            gc: None,
            warnings: Vec::new(),
        };
        let mut forgot_any = false;
        for name in jobs {
            let configured;
            let policy = match policy {
                Some(p) => p,
                None => {
                    configured = config.config.jobs[name].retention_policy();
                    &configured
                }
            };
            let decisions = forget_job(&repo, name, policy, dry_run, &mut out.warnings)?;
            forgot_any |= decisions.snapshots.iter().any(|s| s.kept_by.is_empty());
            out.jobs.push(decisions);
        }
        // Garbage collection also reclaims packs left by interrupted backups, so it
        // runs on `drctl prune` even when nothing was forgotten; after a run only when
        // the run's retention forgot something.
        if !dry_run && (forgot_any || policy.is_none()) {
            let summary = repo.prune(&PruneOptions::default())?;
            out.warnings.extend(summary.warnings.iter().cloned());
            // Skipped (a damaged snapshot file whose references are unknown): the
            // warning says why, and there is no collection to report.
            if summary.skipped.is_none() {
                out.gc = Some(GcReport {
                    packs_deleted: summary.packs_deleted,
                    packs_repacked: summary.packs_repacked,
                    orphan_packs_deleted: summary.orphan_packs_deleted,
                    blobs_removed: summary.blobs_removed,
                    bytes_freed: summary.bytes_freed,
                });
            }
        }
        for warning in &out.warnings {
            tracing::warn!(tier = tier_name, "prune: {warning}");
        }
        report.tiers.push(out);
    }
    Ok(report)
}

/// Forgets what `policy` does not keep of `job`'s snapshots in `repo` (nothing with
/// an empty policy, which keeps all).
fn forget_job(
    repo: &Repository,
    job: &str,
    policy: &Retention,
    dry_run: bool,
    warnings: &mut Vec<String>,
) -> Result<JobRetention, BackupError> {
    // An empty policy keeps everything: decide without taking the exclusive lock.
    let summary = repo.forget(policy, Some(job), dry_run || policy.is_empty())?;
    // Each job on a tier sees the same damaged files: say so once per tier.
    for warning in summary.warnings {
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    let mut snapshots: Vec<RetainedSnapshot> = summary
        .decisions
        .into_iter()
        .map(|d| RetainedSnapshot {
            id: d.id,
            unix_ms: d.time_ms,
            kept_by: d.reasons,
        })
        .collect();
    snapshots.sort_by(|a, b| b.unix_ms.cmp(&a.unix_ms).then(b.id.cmp(&a.id)));
    Ok(JobRetention {
        job: job.to_owned(),
        policy: describe(policy),
        snapshots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snapshot(i: i64, time_ms: i64) -> drd_repo::Snapshot {
        drd_repo::Snapshot {
            id: format!("{i:04}"),
            job: "db".into(),
            host: "h".into(),
            time_ms,
            parent: None,
            sources: vec![],
            tree: drd_repo::Id::default(),
            stats: drd_repo::BackupStats::default(),
        }
    }

    /// A year and a half of daily snapshots at 02:00 UTC, from Monday 2025-01-06,
    /// against a grandfather-father-son policy written as in the config.
    #[test]
    fn a_synthetic_history_keeps_what_the_gfs_rules_say() {
        const DAY: i64 = 86_400_000;
        let start = 20_094 * DAY + 2 * 3_600_000; // 2025-01-06T02:00Z, a Monday
        let history: Vec<drd_repo::Snapshot> =
            (0..548).map(|i| snapshot(i, start + i * DAY)).collect();
        let config: drd_core::config::JobConfig = toml::from_str(
            "tiers = [\"local\"]\nsources = []\n\
             retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12, keep_yearly = 3 }\n",
        )
        .unwrap();
        let policy = config.retention_policy();
        let now = start + 548 * DAY;
        let decisions = drd_repo::apply_retention(&history, &policy, now);
        let kept = |rule: &str| -> Vec<i64> {
            let mut v: Vec<i64> = decisions
                .iter()
                .filter(|d| d.reasons.iter().any(|r| r == rule))
                .map(|d| d.id.parse().unwrap())
                .collect();
            v.sort_unstable();
            v
        };
        // The newest is 547 (2026-07-07, a Tuesday): daily keeps the last seven days.
        assert_eq!(kept("daily"), (541..=547).collect::<Vec<_>>());
        // Weekly: the newest of this week (547) and of the three weeks before, each a
        // Sunday (day 7k - 1 counting from Monday 2025-01-06 as day 0).
        assert_eq!(kept("weekly"), vec![531, 538, 545, 547]);
        // Monthly: the last day of each month back to August 2025, and today.
        let monthly = kept("monthly");
        assert_eq!(monthly.len(), 12);
        assert_eq!(monthly.last(), Some(&547));
        assert_eq!(monthly[monthly.len() - 2], 540, "2026-06-30");
        // Yearly: the newest of 2026 and the last of 2025 (2025-12-31 is day 359).
        assert_eq!(kept("yearly"), vec![359, 547]);
        let all_kept = decisions.iter().filter(|d| !d.reasons.is_empty()).count();
        let expected: std::collections::BTreeSet<i64> =
            [kept("daily"), kept("weekly"), monthly, kept("yearly")]
                .into_iter()
                .flatten()
                .collect();
        assert_eq!(all_kept, expected.len(), "nothing else is kept");

        // retention_days is keep_within in days.
        let config: drd_core::config::JobConfig =
            toml::from_str("tiers = [\"local\"]\nsources = []\nretention_days = 30\n").unwrap();
        let decisions = drd_repo::apply_retention(&history, &config.retention_policy(), now);
        assert_eq!(
            decisions.iter().filter(|d| !d.reasons.is_empty()).count(),
            30
        );
    }

    #[test]
    fn policies_read_as_configured() {
        assert_eq!(describe(&Retention::default()), "keep all");
        let policy = Retention {
            keep_last: 3,
            keep_daily: 7,
            keep_within: Some(Duration::from_secs(30 * 86_400)),
            ..Retention::default()
        };
        assert_eq!(
            describe(&policy),
            "keep_last=3, keep_daily=7, keep_within=30days"
        );
    }
}
