//! drd-repo: the backup repository engine of drd.
//!
//! A repository is a directory of encrypted, compressed, deduplicated snapshots that a
//! key file alone opens: `Repository::init` / `Repository::open`, then
//! [`Repository::backup`], [`Repository::snapshots`], [`Repository::restore`] and
//! [`Repository::verify`]. The format is described in docs/repository-format.md.
//!
//! The code is plain threads, no async: the daemon calls it from a blocking task and
//! the offline `drd restore` / `drd verify` commands call it directly.

mod backup;
mod crypto;
mod error;
mod format;
mod lock;
mod pack;
mod prune;
mod replicate;
mod repo;
mod restore;
mod storage;
mod verify;

pub use backup::{BackupOptions, BackupPlan, BackupProgress, BackupSummary, Source};
pub use crypto::{generate_key_file, token_to_text, KeySet};
pub use error::{Error, Result};
pub use format::{BackupStats, BlobKind, Id, Snapshot};
pub use lock::hostname;
pub use prune::{
    apply_retention, ForgetSummary, PruneOptions, PruneSummary, Retention, RetentionDecision,
};
pub use replicate::ReplicateSummary;
pub use repo::{at_or_before_of, latest_of, select_snapshot, InitOptions, RepoOptions, Repository};
pub use restore::{RestoreOptions, RestoreProgress, RestoreSummary};
pub use storage::{LocalDir, Storage};
pub use verify::{Affected, Problem, VerifyOptions, VerifyProgress, VerifyReport};
