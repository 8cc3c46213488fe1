//! Backup, restore and verify on the daemon's side: turning configured jobs into
//! repository operations, and the sources that need more than reading files (SQLite
//! online copies, command output).
//!
//! Everything here is blocking code; request handlers run it on the blocking pool, and
//! the offline `drd restore` / `drd verify` commands call it directly.

mod command;
pub mod docker;
mod in_place;
pub mod report;
pub mod restore;
mod select;
mod sources;
mod sqlite;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drd_core::config::{JobConfig, LoadedConfig, TierConfig};
use drd_repo::{BackupOptions, BackupPlan, BackupProgress, BackupSummary, Repository};

pub use in_place::{restore_in_place, snapshot_at};
pub use select::{select, Selected};
pub use sqlite::{integrity_check, integrity_problems};

/// Why a backup, restore or verify could not run.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The repository engine failed.
    #[error(transparent)]
    Repo(#[from] drd_repo::Error),
    /// A source could not be prepared (a database that cannot be copied, a command
    /// that cannot start).
    #[error("source {source_name}: {message}")]
    Source {
        /// The source, as configured.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The request names something the config does not have.
    #[error("{0}")]
    NotFound(String),
    /// The snapshot a restore asked for (by id, or as the newest) has a damaged file,
    /// and no intact copy was found; or `latest` / `--at` would pass over such a file
    /// to an older snapshot without being told to. The message names the file and the
    /// command that restores what can be restored.
    #[error("{0}")]
    Damaged(String),
    /// The backup waited for another operation's exclusive lock on its tier and gave
    /// up (after [`LOCK_WAIT`], or because drd is stopping).
    #[error("the backup waited {waited_min} min for the repository lock and gave up: {source}")]
    LockWait {
        /// Whole minutes waited.
        waited_min: u64,
        /// The conflict it met last.
        source: drd_repo::Error,
    },
}

impl BackupError {
    /// True when the error is about something that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            BackupError::NotFound(_)
                | BackupError::Repo(
                    drd_repo::Error::NoSnapshot(_) | drd_repo::Error::NotARepository { .. }
                )
        )
    }
}

impl From<crate::tiers::TierError> for BackupError {
    /// Flattens a tier's failure into the same variants, so callers that match on the
    /// engine's error (a held lock, a missing repository) see it whichever layer met it.
    fn from(err: crate::tiers::TierError) -> Self {
        use crate::tiers::TierError;
        match err {
            TierError::Repo(err) => BackupError::Repo(err),
            TierError::NotFound(message) | TierError::Ambiguous(message) => {
                BackupError::NotFound(message)
            }
            // Only the snapshot listing meets the catalog, and no backup runs it.
            TierError::Catalog(err) => {
                BackupError::Repo(drd_repo::Error::Internal(err.to_string()))
            }
        }
    }
}

/// A job and the tier it writes to, looked up in the config.
pub struct JobTarget<'a> {
    /// The job's name.
    pub name: &'a str,
    /// The job.
    pub job: &'a JobConfig,
    /// The name of the tier backups land on.
    pub tier_name: &'a str,
    /// That tier.
    pub tier: &'a TierConfig,
}

/// Finds job `name` and its tier, or says which jobs there are.
pub fn job_target<'a>(
    config: &'a LoadedConfig,
    name: &'a str,
) -> Result<JobTarget<'a>, BackupError> {
    let (job, tier_name, tier) = crate::tiers::landing(config, name)?;
    Ok(JobTarget {
        name,
        job,
        tier_name,
        tier,
    })
}

/// Runs one backup of `target` into `repo` (its tier's repository, opened with
/// `TierOpener::open_or_init`) and returns what the engine reports; its
/// containers are held in `holds`.
pub fn run_backup(
    mut repo: Repository,
    target: &JobTarget<'_>,
    scratch: &Path,
    holds: &std::sync::Arc<docker::held::HoldRegistry>,
    options: &BackupOptions,
    waiting: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(&BackupProgress),
) -> Result<BackupSummary, BackupError> {
    let mut warnings = Vec::new();
    // Wait for a prune or repair before the sources are prepared: containers stay
    // paused and dumps stay unstarted while the backup waits.
    let _held = wait_for_lock(&repo, options, &mut warnings, waiting)?;
    // The backup takes its own shared lock beside ours. It can meet an exclusive lock
    // only for the moment a prune takes to see ours and back off; retry past that.
    repo.set_lock_wait(LOCK_RETRY);
    let parent = repo.latest(Some(target.name))?.map(|s| s.id);
    let prepared = sources::prepare(&target.job.sources, scratch, holds)?;
    let plan = BackupPlan {
        job: target.name.to_owned(),
        host: None,
        parent,
        sources: prepared.sources,
    };
    let mut summary = repo.backup(plan, options, progress)?;
    drop(prepared.scratch);
    summary.warnings.extend(warnings);
    Ok(summary)
}

/// How long a backup waits for another operation's exclusive lock on its tier (a
/// prune, a repair, in this daemon or another process). A prune of a large tier runs
/// for minutes, and a scheduled backup that runs late is better than one that fails;
/// a lock held longer than this is more likely stuck than busy, and the run fails
/// with the holder and the lock file named.
pub const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// How long the backup's own lock retries while [`wait_for_lock`]'s is held.
const LOCK_RETRY: Duration = Duration::from_secs(30);

/// Takes a shared lock on `repo`, waiting up to [`LOCK_WAIT`] while another operation
/// holds the exclusive one; `waiting` hears who holds it, at the first try that fails
/// and then every [`WAIT_REPORT`]. Gives up early when the backup is cancelled.
fn wait_for_lock(
    repo: &drd_repo::Repository,
    options: &BackupOptions,
    warnings: &mut Vec<String>,
    waiting: &mut dyn FnMut(&str),
) -> Result<drd_repo::RepoLock, BackupError> {
    let started = Instant::now();
    let mut reported: Option<Instant> = None;
    loop {
        match repo.try_lock_shared(warnings) {
            Ok(lock) => return Ok(lock),
            Err(err) => {
                let drd_repo::Error::Locked { holder, .. } = &err else {
                    return Err(err.into());
                };
                let cancelled = options
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst));
                if cancelled || started.elapsed() >= LOCK_WAIT {
                    return Err(BackupError::LockWait {
                        waited_min: started.elapsed().as_secs() / 60,
                        source: err,
                    });
                }
                if reported.is_none_or(|at| at.elapsed() >= WAIT_REPORT) {
                    waiting(holder);
                    reported = Some(Instant::now());
                }
                std::thread::sleep(LOCK_POLL);
            }
        }
    }
}

/// How often a waiting backup tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(500);

/// How often a waiting backup says again that it waits.
const WAIT_REPORT: Duration = Duration::from_secs(10);

/// Where scratch copies (SQLite online backups) go while a backup runs.
pub fn scratch_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("scratch")
}
