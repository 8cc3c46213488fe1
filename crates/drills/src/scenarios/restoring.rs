//! What the restore drills share: a restore into a sandbox folder through drd-backup's
//! one restore path (the one `drctl restore` takes), followed by a check of every
//! restored file against the snapshot's own hashes. A restore counts as a recovery
//! only once that check passes; the RTO is measured up to then.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drd_backup::backup::restore::{self, Opened};
use drd_core::config::drills::Target;
use drd_core::config::JobConfig;
use drd_proto::{Category, SnapshotSelector};
use drd_repo::{RestoreOptions, Snapshot};

use super::Drill;
use crate::sandbox::SandboxDir;

/// A snapshot restored into the sandbox and checked file by file.
pub(super) struct Checked {
    /// The snapshot restored.
    pub snapshot: Snapshot,
    /// Where it was restored; removed when this is dropped.
    pub dir: SandboxDir,
    /// One line on what was restored and checked, for the evidence.
    pub evidence: String,
}

/// Runs blocking repository work off the runtime; a panic there is a failed drill.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("the drill's restore stopped: {e}")))
}

/// Opens `job`'s landing tier as `drctl restore --job JOB` does.
pub(super) async fn open_landing(drill: &Drill, job: &str) -> Result<Arc<Opened>, String> {
    let opener = drill.drills.backups.tiers.clone();
    let catalog = drill.drills.core.catalog.clone();
    let (config, job) = (drill.config.clone(), job.to_owned());
    blocking(move || {
        restore::open(&opener, &catalog, &config, Some(&job), None)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    })
    .await
}

/// Restores the snapshot of `job` that `selector` picks from `opened` into a fresh
/// sandbox folder named `label` (only `paths`, if any), then checks every restored
/// file against the snapshot. `need` is the space to ask the sandbox for (the
/// snapshot's total size when `None`). The error says what failed, naming the files.
pub(super) async fn restore_checked(
    drill: &Drill,
    opened: &Arc<Opened>,
    job: &str,
    selector: SnapshotSelector,
    paths: Vec<PathBuf>,
    label: &str,
    need: Option<u64>,
) -> Result<Checked, String> {
    let (opened, job) = (opened.clone(), job.to_owned());
    let sandbox = drill.sandbox.clone();
    let progress = drill.progress();
    let (threads, label) = (restore::threads(&drill.config), label.to_owned());
    blocking(move || {
        let selected = opened
            .select(&selector, Some(&job), false)
            .map_err(|e| e.to_string())?;
        let snapshot = selected.snapshot.clone();
        let dir = sandbox.dir(&label, need.unwrap_or(snapshot.stats.total_size))?;
        let options = RestoreOptions {
            paths,
            target: dir.path().to_owned(),
            overwrite: false,
            threads,
            beneath: None,
        };
        let short = snapshot.short_id().to_owned();
        let restored = opened
            .restore(selected, &options, &*progress)
            .map_err(|e| format!("restoring snapshot {short} from tier {}: {e}", opened.tier))?;
        if let Some(first) = restored.summary.damaged.first() {
            return Err(format!(
                "snapshot {short} from tier {} restored incomplete: {} file(s) not whole, \
                 first {}: {}; run `drctl verify --tier {} --read-data` to see the damage",
                opened.tier,
                restored.summary.damaged.len(),
                first.path,
                first.reason,
                opened.tier
            ));
        }
        let check = opened
            .repo
            .check_restored(&snapshot, &options.paths, dir.path())
            .map_err(|e| format!("checking the restore of snapshot {short}: {e}"))?;
        if let Some(first) = check.mismatches.first() {
            return Err(format!(
                "snapshot {short} from tier {} restored, but {} of {} file(s) differ from \
                 the snapshot, first {} {}",
                opened.tier,
                check.mismatches.len(),
                check.files,
                first.path,
                first.reason
            ));
        }
        let mut evidence = format!(
            "restored snapshot {short} (taken {}) from tier {}: {} file(s), {} checked \
             against the snapshot",
            drd_proto::text::time(snapshot.time_ms),
            opened.tier,
            check.files,
            drd_proto::text::bytes(check.bytes)
        );
        for warning in restored.warnings.iter().chain(&restored.summary.warnings) {
            evidence.push_str(&format!("; {warning}"));
        }
        Ok(Checked {
            snapshot,
            dir,
            evidence,
        })
    })
    .await
}

/// How old `snapshot` is now, by the drills' clock: the RPO of recovering from it.
pub(super) fn age(drill: &Drill, snapshot: &Snapshot) -> Duration {
    let ms = drill.drills.clock.now_ms() - snapshot.time_ms;
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The targets a drill of `job` in `category` is held to: the category's, with the
/// job's own `rpo` when it sets one (as rto_rpo holds it).
pub(super) fn job_target(drill: &Drill, category: Category, job: &JobConfig) -> Target {
    let mut target = drill.target(category);
    if let Some(rpo) = job.rpo {
        target.rpo = rpo;
    }
    target
}

/// RTO and RPO of a recovery from `snapshot` that was checked just now.
pub(super) fn measured(
    drill: &Drill,
    started: Instant,
    snapshot: &Snapshot,
) -> (Option<Duration>, Option<Duration>) {
    (Some(started.elapsed()), Some(age(drill, snapshot)))
}
