//! The replication worker: keeps every offsite tier a copy of the landing tier it
//! backs up, after each snapshot and at least every hour.
//!
//! A copy runs through drd-repo's `replicate_to`, which writes packs, index files and
//! snapshots in the crash-safe order, so an interrupted copy leaves an offsite
//! repository that verifies and holds only whole snapshots. An offsite tier that
//! cannot be reached never fails a backup: its copy is retried with a doubling delay
//! (capped by `daemon.replication_retry_max`), the error and the lag show in
//! `drctl jobs`, and the first failure and the recovery are audited (not every retry).
//!
//! Lag is derived from the snapshot cache of both tiers: after a copy, the offsite
//! tier's cache holds the snapshots the copy carried, so a job's lag on a tier is the
//! age of its oldest landing snapshot that the tier does not have.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drd_core::audit::{Actor, Outcome};
use drd_core::config::replication_pairs;
use drd_core::util::unix_ms_now;
use drd_proto::SnapshotInfo;
use rusqlite::{params, Connection, OptionalExtension};

use super::{snapshot_cache, TierError, TierOpener};
use crate::Backups;

/// A copy that succeeded is checked again after this long even with no new snapshot,
/// so a copy damaged or deleted by hand is repaired.
const RECHECK_EVERY: Duration = Duration::from_secs(3600);

/// The first retry after a failure; each further failure doubles it.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// Where one pair stands.
#[derive(Debug, Clone)]
struct PairState {
    due: Instant,
    retry: Duration,
    failing: bool,
}

/// The worker. Wake it with [`Backups::replication`] after a snapshot lands.
pub struct Replicator {
    backups: Arc<Backups>,
    pairs: HashMap<(String, String), PairState>,
}

impl Replicator {
    /// A replicator for the daemon's tiers; every pair is due at once.
    pub fn new(backups: Arc<Backups>) -> Replicator {
        Replicator {
            backups,
            pairs: HashMap::new(),
        }
    }

    /// Syncs the pair table with the config in force (it may have been reloaded) and
    /// returns the pairs in order.
    fn current_pairs(&mut self) -> Vec<(String, String)> {
        let pairs = replication_pairs(&self.backups.core.config().config.jobs);
        self.pairs.retain(|k, _| pairs.contains(k));
        for pair in &pairs {
            self.pairs.entry(pair.clone()).or_insert(PairState {
                due: Instant::now(),
                retry: FIRST_RETRY,
                failing: false,
            });
        }
        pairs
    }

    async fn copy(&mut self, source: &str, dest: &str) -> Result<String, String> {
        let config = self.backups.core.config();
        let retry_max = config.config.daemon.replication_retry_max;
        let (src, dst) = (source.to_owned(), dest.to_owned());
        let (run_config, opener) = (config.clone(), self.backups.tiers.clone());
        let result =
            tokio::task::spawn_blocking(move || copy_blocking(&opener, &run_config, &src, &dst))
                .await
                .unwrap_or_else(|join| {
                    Err(drd_repo::Error::Internal(format!("the copy task failed: {join}")).into())
                });
        let key = (source.to_owned(), dest.to_owned());
        let now_ms = unix_ms_now();
        let actor = Actor::Daemon;
        let action = format!("replicate {source} to {dest}");
        match result {
            Ok(copied) => {
                for warning in &copied.summary.warnings {
                    tracing::warn!(source, dest, "replication: {warning}");
                }
                let was_failing = self.pairs.get(&key).is_some_and(|s| s.failing);
                if let Some(state) = self.pairs.get_mut(&key) {
                    *state = PairState {
                        due: Instant::now() + RECHECK_EVERY,
                        retry: FIRST_RETRY,
                        failing: false,
                    };
                }
                let detail = format!(
                    "{} files ({} bytes) copied; {} snapshots on {dest}",
                    copied.summary.files_copied,
                    copied.summary.bytes_copied,
                    copied.on_dest.len()
                );
                let (s, d) = key.clone();
                let summary = copied.summary.clone();
                let record = self
                    .backups
                    .core
                    .catalog
                    .call("record replication", move |c| {
                        record_ok(c, &s, &d, now_ms, &summary)?;
                        snapshot_cache::replace(c, &s, &copied.on_source)?;
                        snapshot_cache::replace(c, &d, &copied.on_dest)
                    })
                    .await;
                if let Err(err) = record {
                    tracing::warn!(cause = %err, "cannot record the replication");
                }
                if copied.summary.files_copied > 0 || was_failing {
                    self.backups
                        .core
                        .audit(&actor, &action, Outcome::Ok, detail.clone())
                        .await;
                }
                Ok(format!("{source} -> {dest}: {detail}"))
            }
            Err(err) => {
                let message = err.to_string();
                let (retry, first) = match self.pairs.get_mut(&key) {
                    Some(state) => {
                        let first = !state.failing;
                        let retry = state.retry;
                        state.due = Instant::now() + retry;
                        state.retry = (retry * 2).min(retry_max.max(FIRST_RETRY));
                        state.failing = true;
                        (retry, first)
                    }
                    None => (FIRST_RETRY, true),
                };
                let (s, d, m) = (key.0.clone(), key.1.clone(), message.clone());
                if let Err(e) = self
                    .backups
                    .core
                    .catalog
                    .call("record replication", move |c| {
                        record_failure(c, &s, &d, now_ms, &m)
                    })
                    .await
                {
                    tracing::warn!(cause = %e, "cannot record the replication failure");
                }
                tracing::warn!(source, dest, cause = %message, retry = %humantime::format_duration(retry), "replication failed");
                if first {
                    self.backups
                        .core
                        .audit(&actor, &action, Outcome::Failed, message.clone())
                        .await;
                }
                Err(format!(
                    "{source} -> {dest}: {message}; retrying in {}",
                    humantime::format_duration(retry)
                ))
            }
        }
    }
}

#[async_trait::async_trait]
impl drd_core::workers::Worker for Replicator {
    fn name(&self) -> &'static str {
        "replication"
    }

    async fn step(&mut self) -> Result<String, String> {
        let pairs = self.current_pairs();
        if pairs.is_empty() {
            return Ok("no offsite tiers configured".to_owned());
        }
        let now = Instant::now();
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for (source, dest) in pairs {
            let due = self
                .pairs
                .get(&(source.clone(), dest.clone()))
                .is_none_or(|s| s.due <= now);
            if !due {
                continue;
            }
            match self.copy(&source, &dest).await {
                Ok(detail) => done.push(detail),
                Err(detail) => failed.push(detail),
            }
        }
        if failed.is_empty() {
            Ok(if done.is_empty() {
                "every offsite tier is in step".to_owned()
            } else {
                done.join("; ")
            })
        } else {
            Err(failed.join("; "))
        }
    }

    async fn wait(&mut self) {
        let next = self
            .pairs
            .values()
            .map(|s| s.due)
            .min()
            .unwrap_or_else(|| Instant::now() + RECHECK_EVERY);
        tokio::select! {
            () = self.backups.replication.notified() => {
                // A new snapshot: every pair whose landing tier may have it is due now.
                for state in self.pairs.values_mut() {
                    state.due = state.due.min(Instant::now());
                }
            }
            () = tokio::time::sleep_until(next.into()) => {}
        }
    }
}

/// What a copy did, and the snapshots each side holds (for the snapshot cache, which
/// the lag is computed from; the landing side may have lost some to retention).
struct Copied {
    summary: drd_repo::ReplicateSummary,
    on_source: Vec<SnapshotInfo>,
    on_dest: Vec<SnapshotInfo>,
}

fn copy_blocking(
    opener: &TierOpener,
    config: &drd_core::config::LoadedConfig,
    source: &str,
    dest: &str,
) -> Result<Copied, TierError> {
    let tiers = &config.config.tiers;
    let (Some(src_tier), Some(dst_tier)) = (tiers.get(source), tiers.get(dest)) else {
        return Err(TierError::NotFound(format!(
            "tier {source:?} or {dest:?} is no longer configured"
        )));
    };
    let keys = config.keys()?;
    let src_storage = opener.storage(src_tier)?;
    if src_storage.size("config")?.is_none() {
        // Nothing has landed yet; nothing to copy.
        return Ok(Copied {
            summary: drd_repo::ReplicateSummary::default(),
            on_source: Vec::new(),
            on_dest: Vec::new(),
        });
    }
    let repo = drd_repo::Repository::open_on(src_storage, keys, drd_repo::RepoOptions::default())?;
    let dst_storage = opener.storage(dst_tier)?;
    let summary = repo.replicate_to(&dst_storage, &mut |_| {})?;
    let ids_on_dest: BTreeSet<String> = snapshot_cache::ids_on_tier(dst_storage.as_ref())?;
    let list = repo.snapshot_list()?;
    let on_dest = list
        .snapshots
        .iter()
        .filter(|s| ids_on_dest.contains(&s.id))
        .map(|s| snapshot_cache::snapshot_info(s, dest))
        .collect();
    // Damaged files too, so the cache keeps what it read from them before.
    let on_source = list
        .snapshots
        .iter()
        .map(|s| snapshot_cache::snapshot_info(s, source))
        .chain(
            list.damaged
                .iter()
                .map(|d| snapshot_cache::damaged_info(d, source)),
        )
        .collect();
    Ok(Copied {
        summary,
        on_source,
        on_dest,
    })
}

fn record_ok(
    conn: &Connection,
    source: &str,
    dest: &str,
    now_ms: i64,
    summary: &drd_repo::ReplicateSummary,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO replication (source, dest, last_attempt_ms, last_ok_ms, last_error,
                                  failures, files_copied, bytes_copied)
         VALUES (?1, ?2, ?3, ?3, NULL, 0, ?4, ?5)
         ON CONFLICT (source, dest) DO UPDATE SET
            last_attempt_ms = ?3, last_ok_ms = ?3, last_error = NULL, failures = 0,
            files_copied = files_copied + ?4, bytes_copied = bytes_copied + ?5",
        params![
            source,
            dest,
            now_ms,
            i64::try_from(summary.files_copied).unwrap_or(i64::MAX),
            i64::try_from(summary.bytes_copied).unwrap_or(i64::MAX)
        ],
    )?;
    Ok(())
}

fn record_failure(
    conn: &Connection,
    source: &str,
    dest: &str,
    now_ms: i64,
    error: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO replication (source, dest, last_attempt_ms, last_error, failures)
         VALUES (?1, ?2, ?3, ?4, 1)
         ON CONFLICT (source, dest) DO UPDATE SET
            last_attempt_ms = ?3, last_error = ?4, failures = failures + 1",
        params![source, dest, now_ms, error],
    )?;
    Ok(())
}

/// One job's standing on one offsite tier, for `drctl jobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLag {
    /// The offsite tier.
    pub tier: String,
    /// Age in ms of the job's oldest snapshot that the tier lacks; 0 when the tier
    /// holds every snapshot of the job.
    pub lag_ms: i64,
    /// Snapshots of the job the tier lacks.
    pub missing: u64,
    /// When a copy to the tier last succeeded.
    pub last_ok_ms: Option<i64>,
    /// The last copy's error, while it is failing.
    pub last_error: Option<String>,
}

/// The jobs of `config` that have offsite tiers, each with its tiers (landing tier
/// first): what [`lag`] is asked about, by `drctl jobs` and by the metrics alike.
pub fn jobs_with_offsite(config: &drd_core::config::LoadedConfig) -> Vec<(String, Vec<String>)> {
    config
        .config
        .jobs
        .iter()
        .filter(|(_, job)| job.tiers.len() > 1)
        .map(|(name, job)| (name.clone(), job.tiers.clone()))
        .collect()
}

/// Lag of `job` on each of its offsite tiers (`tiers` minus the first), from the
/// snapshot cache and the replication table. Runs on the catalog thread.
pub fn lag(
    conn: &Connection,
    job: &str,
    tiers: &[String],
    now_ms: i64,
) -> rusqlite::Result<Vec<TierLag>> {
    let Some((landing, offsite)) = tiers.split_first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for tier in offsite {
        let (missing, oldest): (i64, Option<i64>) = conn.query_row(
            "SELECT COUNT(*), MIN(l.unix_ms) FROM snapshots l
             WHERE l.tier = ?1 AND l.job = ?2
               AND NOT EXISTS (SELECT 1 FROM snapshots o WHERE o.tier = ?3 AND o.id = l.id)",
            params![landing, job, tier],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let row: Option<(Option<i64>, Option<String>)> = conn
            .query_row(
                "SELECT last_ok_ms, last_error FROM replication WHERE source = ?1 AND dest = ?2",
                params![landing, tier],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (last_ok_ms, last_error) = row.unwrap_or((None, None));
        out.push(TierLag {
            tier: tier.clone(),
            lag_ms: oldest.map_or(0, |t| (now_ms - t).max(0)),
            missing: u64::try_from(missing).unwrap_or(0),
            last_ok_ms,
            last_error,
        });
    }
    Ok(out)
}
