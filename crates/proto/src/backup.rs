//! What backup, restore and verify requests report back.

use serde::{Deserialize, Serialize};

/// Which snapshot a restore reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotSelector {
    /// The newest (of the job, if one is named).
    Latest,
    /// A snapshot id or a unique prefix of one.
    Id(String),
    /// The newest at or before this time (Unix milliseconds).
    At(i64),
}

impl SnapshotSelector {
    /// The selector for the command-line pair `--backup-id ID|latest [--at TIME]`
    /// that `drctl restore` and `drd restore` share. The error is a message for
    /// the person at the terminal.
    pub fn from_args(
        backup_id: &str,
        at: Option<&str>,
        now: std::time::SystemTime,
    ) -> Result<SnapshotSelector, String> {
        match (backup_id, at) {
            ("latest", None) => Ok(SnapshotSelector::Latest),
            ("latest", Some(at)) => crate::time::parse_point_in_time(at, now)
                .map(SnapshotSelector::At)
                .map_err(|e| format!("--at {e}")),
            (_, Some(_)) => {
                Err("--at picks a snapshot by time; use it with --backup-id latest".to_owned())
            }
            (id, None) => Ok(SnapshotSelector::Id(id.to_owned())),
        }
    }
}

/// Parses a `--subset` percentage: above 0, at most 100, `%` optional.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if value > 0.0 && value <= 100.0 {
        Ok(value)
    } else {
        Err("a percentage between 0 and 100".to_owned())
    }
}

/// One snapshot, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot id (hex).
    pub id: String,
    /// The job that made it.
    pub job: String,
    /// The host that made it.
    pub host: String,
    /// When the backup started (Unix milliseconds).
    pub unix_ms: i64,
    /// The snapshot it was taken incrementally against.
    pub parent: Option<String>,
    /// Total content size of its files.
    pub size: u64,
    /// Files, symlinks and streams in it.
    pub files: u64,
    /// The tier (repository) it is in.
    pub tier: String,
    /// Set when the snapshot file cannot be read: why (it does not decrypt, it does not
    /// parse). It cannot be restored from this tier then. Job, host, time, parent, size
    /// and files are what the daemon's catalog last read from the intact file, or
    /// unknown (empty, 0) when it never read it; `unix_ms` is then when the file was
    /// written, as far as the damaged file still says.
    pub damaged: Option<String>,
    /// The snapshot file (path or URL), set when it is damaged.
    pub file: Option<String>,
}

/// The outcome of a backup run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupReport {
    /// The snapshot written.
    pub snapshot: SnapshotInfo,
    /// Files not in the parent.
    pub files_new: u64,
    /// Files whose metadata changed since the parent (read again).
    pub files_changed: u64,
    /// Files unchanged since the parent (not read).
    pub files_unchanged: u64,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Bytes added to the repository after dedup, compression and encryption.
    pub bytes_added: u64,
    /// Things the operator should know (files that changed while read, skipped files).
    pub warnings: Vec<String>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

/// The outcome of a restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot: SnapshotInfo,
    /// Where it went.
    pub target: String,
    /// Regular files written.
    pub files: u64,
    /// Directories made.
    pub dirs: u64,
    /// Symlinks made.
    pub symlinks: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// What could not be restored exactly.
    pub warnings: Vec<String>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
    /// FIFOs (named pipes) made.
    pub fifos: u64,
    /// Files and folders not restored whole because a blob they need is missing or
    /// damaged on every tier tried (at most [`RestoreReport::DAMAGED_LISTED`] of them,
    /// and at most [`RestoreReport::DAMAGED_LISTED_BYTES`] of text; `damaged_total`
    /// counts all). Not empty: the restore is incomplete, and drctl
    /// exits 1.
    pub damaged: Vec<DamagedFile>,
    /// How many files and folders were not restored whole.
    pub damaged_total: u64,
}

impl RestoreReport {
    /// The most damaged files a report lists, so that a badly damaged repository's
    /// report still fits in one frame; the daemon's log names every one.
    pub const DAMAGED_LISTED: usize = 5000;
    /// The most text (paths and reasons) the list of damaged files holds, well below
    /// [`crate::MAX_FRAME_LEN`].
    pub const DAMAGED_LISTED_BYTES: usize = 1024 * 1024;
}

/// A file or folder a restore could not bring back whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DamagedFile {
    /// Its path inside the snapshot.
    pub path: String,
    /// Where its readable parts were kept (`NAME.damaged` under the target, the
    /// unreadable parts left as zeros), if anywhere.
    pub kept_as: Option<String>,
    /// What could not be read, and why.
    pub reason: String,
}

/// The outcome of verifying one repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The tier verified.
    pub tier: String,
    /// Its location.
    pub location: String,
    /// Snapshots whose trees were walked.
    pub snapshots: u64,
    /// Packs whose structure was checked.
    pub packs: u64,
    /// Packs whose data was read.
    pub packs_read: u64,
    /// Blobs decrypted and re-hashed.
    pub blobs_read: u64,
    /// Damage found; empty means the repository is sound.
    pub problems: Vec<VerifyProblem>,
    /// Bytes in packs no index lists (left by an interrupted backup; safe to remove).
    pub reclaimable_bytes: u64,
    /// Notes such as stale locks broken.
    pub warnings: Vec<String>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

/// One piece of damage and what it breaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyProblem {
    /// What is wrong, in words (with the affected files listed).
    pub message: String,
    /// The snapshot files the damage breaks.
    pub affected: Vec<AffectedFile>,
}

/// A file in a snapshot that damage breaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AffectedFile {
    /// The snapshot id.
    pub snapshot: String,
    /// The path inside the snapshot.
    pub path: String,
}

/// The outcome of rebuilding one repository's index from its pack headers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepairReport {
    /// The tier repaired.
    pub tier: String,
    /// Its location.
    pub location: String,
    /// Damaged index files removed, each with what was wrong with it.
    pub index_files_removed: Vec<String>,
    /// The index file written for the packs no readable index listed, if any.
    pub index_file_written: Option<String>,
    /// Packs written into it (read by their headers).
    pub packs_indexed: u64,
    /// Blobs in those packs.
    pub blobs_indexed: u64,
    /// Packs in no readable index whose header is damaged too: left in place, not
    /// indexed (verify lists what they break). Empty when the repair is complete.
    pub unreadable_packs: Vec<String>,
    /// Notes such as stale locks broken.
    pub warnings: Vec<String>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}
