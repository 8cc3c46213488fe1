//! The one way the daemon restores a snapshot: open the tier a request means (a
//! landing tier with its offsite copies as fallbacks), pick the snapshot with what the
//! catalog knows of damaged snapshot files, and restore it with byte progress.
//! `drctl restore` and the recovery drills both go through here, so a drill times and
//! checks the very path an engineer would use in an incident.
//!
//! Everything here is blocking; callers run it on the blocking pool.

use std::collections::HashMap;

use drd_core::catalog::Catalog;
use drd_core::config::LoadedConfig;
use drd_proto::{Progress, ProgressUnit, SnapshotInfo, SnapshotSelector};
use drd_repo::{Repository, RestoreOptions, RestoreSummary, Snapshot};

use super::{select, BackupError, Selected};
use crate::tiers::{snapshot_cache, TierError, TierOpener};

/// A tier opened for a restore.
pub struct Opened {
    /// The tier's name.
    pub tier: String,
    /// Its repository, reading a blob it lacks from the tier's copies.
    pub repo: Repository,
    /// What the catalog read from the tier's snapshot files while they were intact (by
    /// id). It only narrows which damaged files are in the way; without it, all are.
    pub known: HashMap<String, SnapshotInfo>,
}

/// A finished restore.
pub struct Restored {
    /// The snapshot restored.
    pub snapshot: Snapshot,
    /// What the engine reported.
    pub summary: RestoreSummary,
    /// What the choice of snapshot passed over, or the copy that stood in for it.
    pub warnings: Vec<String>,
}

/// Opens, for reading, the tier a restore about `job` and `tier` means (see
/// [`TierOpener::open_for_job`]), with the catalog's record of its snapshot files.
pub fn open(
    opener: &TierOpener,
    catalog: &Catalog,
    config: &LoadedConfig,
    job: Option<&str>,
    tier: Option<&str>,
) -> Result<Opened, TierError> {
    let (tier, repo) = opener.open_for_job(config, job, tier)?;
    let known = known(catalog, &tier);
    Ok(Opened { tier, repo, known })
}

/// Opens tier `name` on its own, read directly: no copy stands in for a blob it lacks
/// and the catalog's index cache is not used, so a restore from it finds what it would
/// if every other tier were gone.
pub fn open_alone(
    catalog: &Catalog,
    config: &LoadedConfig,
    name: &str,
) -> Result<Opened, TierError> {
    let tier = config.tier(name).map_err(TierError::NotFound)?;
    let repo = crate::tiers::open_uncached(tier, config.keys()?)?;
    let known = known(catalog, name);
    Ok(Opened {
        tier: name.to_owned(),
        repo,
        known,
    })
}

/// What the catalog read from `tier`'s snapshot files; nothing if it cannot say.
fn known(catalog: &Catalog, tier: &str) -> HashMap<String, SnapshotInfo> {
    let tier = tier.to_owned();
    catalog
        .call_blocking("read snapshot cache", move |c| {
            snapshot_cache::known(c, &tier)
        })
        .unwrap_or_else(|err| {
            tracing::warn!(cause = %err, "cannot read the snapshot cache");
            HashMap::new()
        })
}

impl Opened {
    /// The snapshot `selector` names (of `job`, if given); see [`select`]. What the
    /// choice passed over is logged and kept in the warnings.
    pub fn select(
        &self,
        selector: &SnapshotSelector,
        job: Option<&str>,
        allow_older: bool,
    ) -> Result<Selected, BackupError> {
        let selected = select(&self.repo, selector, job, allow_older, &self.known)?;
        for warning in &selected.warnings {
            tracing::warn!(tier = self.tier, "{warning}");
        }
        Ok(selected)
    }

    /// Restores `selected` as `options` say, reporting bytes written to `progress`.
    pub fn restore(
        &self,
        selected: Selected,
        options: &RestoreOptions,
        progress: &dyn Fn(Progress),
    ) -> Result<Restored, BackupError> {
        let snapshot = selected.snapshot;
        let task = format!("restore {}", snapshot.short_id());
        let summary = self.repo.restore(&snapshot, options, &mut |p| {
            progress(Progress {
                task: task.clone(),
                done: p.bytes_done,
                total: Some(p.bytes_total),
                unit: ProgressUnit::Bytes,
                detail: format!("{}/{} files", p.files_done, p.files_total),
            });
        })?;
        Ok(Restored {
            snapshot,
            summary,
            warnings: selected.warnings,
        })
    }
}

/// Writer threads for a restore: `[daemon] restore_threads`, or the engine's default.
pub fn threads(config: &LoadedConfig) -> usize {
    match config.config.daemon.restore_threads {
        0 => RestoreOptions::default_threads(),
        n => n,
    }
}
