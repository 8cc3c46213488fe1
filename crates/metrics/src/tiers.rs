//! Per tier: how big the repository is, how many snapshots it holds, how far each
//! job's offsite copy lags, and how far the rolling verifier has come.
//!
//! Counts and lags come from the catalog (the snapshot cache, `replication::lag` as
//! `drctl jobs` reads it, `verify_coverage`) on every scrape. The size needs the
//! repository's index, which is work on a big or remote tier, so it is read at most
//! once per [`SIZE_EVERY`] and the last figure served in between.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drd_backup::tiers::{replication, snapshot_cache};
use drd_core::config::LoadedConfig;
use drd_watch::corruption::packs;
use drd_watch::Watch;
use prometheus_client::registry::Registry;

use crate::{gauges, seconds, set, Result, Source};

/// How long a tier's size is served before it is read again.
pub const SIZE_EVERY: Duration = Duration::from_secs(60);

/// The tiers area, with the sizes read so far.
#[derive(Default)]
pub struct Tiers {
    sizes: Mutex<BTreeMap<String, (Instant, u64)>>,
}

#[async_trait]
impl Source for Tiers {
    fn name(&self) -> &'static str {
        "tiers"
    }

    async fn collect(&self, watch: &Watch, registry: &mut Registry) -> Result<()> {
        let config = watch.core.config();
        let now = watch.now_ms();
        let names: Vec<String> = config.config.tiers.keys().cloned().collect();
        let with_offsite = replication::jobs_with_offsite(&config);
        let (counts, lags) = watch
            .core
            .catalog
            .call("read tier metrics", move |c| {
                let mut counts = BTreeMap::new();
                for tier in names {
                    let n = snapshot_cache::list(c, &tier, None)?.len();
                    counts.insert(tier, n);
                }
                let mut lags = Vec::new();
                for (job, tiers) in with_offsite {
                    for lag in replication::lag(c, &job, &tiers, now)? {
                        lags.push((job.clone(), lag));
                    }
                }
                Ok((counts, lags))
            })
            .await?;
        let coverage = packs::summaries(&watch.core.catalog).await?;
        let sizes = self.sizes(watch, &config).await;

        let snapshots = gauges(
            registry,
            "drd_tier_snapshots",
            "Sound snapshots on the tier, as the catalog's snapshot cache last read them",
        );
        for (tier, n) in &counts {
            #[allow(clippy::cast_precision_loss)]
            set(&snapshots, &[("tier", tier.as_str())], *n as f64);
        }
        let size = gauges(
            registry,
            "drd_tier_repository_size_bytes",
            "Bytes of pack data in the tier's repository, as its index lists them (read \
             at most once a minute)",
        );
        for (tier, bytes) in &sizes {
            #[allow(clippy::cast_precision_loss)]
            set(&size, &[("tier", tier.as_str())], *bytes as f64);
        }

        let lag_seconds = gauges(
            registry,
            "drd_replication_lag_seconds",
            "Age of the job's oldest snapshot that the offsite tier lacks; 0 when the copy \
             is in step",
        );
        let missing = gauges(
            registry,
            "drd_replication_missing_snapshots",
            "Snapshots of the job on its landing tier that the offsite tier lacks",
        );
        let last_ok = gauges(
            registry,
            "drd_replication_last_success_timestamp_seconds",
            "When a copy from the landing tier to the offsite tier last succeeded, in Unix \
             seconds",
        );
        for (job, lag) in &lags {
            let l = [("backup_job", job.as_str()), ("tier", lag.tier.as_str())];
            set(&lag_seconds, &l, seconds(lag.lag_ms));
            #[allow(clippy::cast_precision_loss)]
            set(&missing, &l, lag.missing as f64);
            if let Some(at) = lag.last_ok_ms {
                set(&last_ok, &l, seconds(at));
            }
        }

        let oldest = gauges(
            registry,
            "drd_verify_coverage_oldest_age_seconds",
            "Time since the rolling verifier last read the tier's least recently read pack \
             (a pack never read counts from when it was first seen)",
        );
        let by_state = gauges(
            registry,
            "drd_verify_packs",
            "Packs of the tier by what the rolling verifier found at their last read: \
             sound, unread or damaged",
        );
        for (tier, summary) in &coverage {
            if let Some(at) = summary.oldest_ms {
                set(
                    &oldest,
                    &[("tier", tier.as_str())],
                    seconds((now - at).max(0)),
                );
            }
            for (state, n) in [
                ("sound", summary.sound),
                ("unread", summary.unread),
                ("damaged", summary.damaged),
            ] {
                #[allow(clippy::cast_precision_loss)]
                set(
                    &by_state,
                    &[("tier", tier.as_str()), ("state", state)],
                    n as f64,
                );
            }
        }
        Ok(())
    }
}

impl Tiers {
    /// Each configured tier's size: the cached figure while it is fresh, else read
    /// again from its index. A tier that cannot be opened (not created yet, offline)
    /// is left out until it can.
    async fn sizes(&self, watch: &Watch, config: &Arc<LoadedConfig>) -> BTreeMap<String, u64> {
        let stale: Vec<String> = {
            let sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
            config
                .config
                .tiers
                .keys()
                .filter(|t| {
                    sizes
                        .get(*t)
                        .is_none_or(|(at, _)| at.elapsed() >= SIZE_EVERY)
                })
                .cloned()
                .collect()
        };
        if !stale.is_empty() {
            let (opener, config) = (watch.backups.tiers.clone(), config.clone());
            let read = tokio::task::spawn_blocking(move || {
                let mut read = Vec::new();
                for name in stale {
                    let (Some(tier), Ok(keys)) = (config.config.tiers.get(&name), config.keys())
                    else {
                        continue;
                    };
                    let size = opener
                        .open(tier, keys)
                        .map_err(|e| e.to_string())
                        .and_then(|repo| repo.indexed_packs().map_err(|e| e.to_string()));
                    match size {
                        Ok(packs) => read.push((name, packs.iter().map(|(_, s)| s).sum::<u64>())),
                        Err(err) => {
                            tracing::debug!(tier = name, cause = %err, "no size for the tier metrics");
                        }
                    }
                }
                read
            })
            .await
            .unwrap_or_default();
            let mut sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, size) in read {
                sizes.insert(name, (Instant::now(), size));
            }
        }
        let sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        sizes
            .iter()
            .filter(|(name, _)| config.config.tiers.contains_key(*name))
            .map(|(name, (_, size))| (name.clone(), *size))
            .collect()
    }
}
