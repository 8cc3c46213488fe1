//! drd-repo: the backup repository engine of drd.
//!
//! A repository is a directory of encrypted, compressed, deduplicated snapshots that a
//! key file alone opens: [`Repository::init`] / [`Repository::open`], then
//! [`Repository::backup`], [`Repository::snapshot_list`] (and [`Repository::find_snapshot`],
//! [`Repository::at_or_before`]), [`Repository::restore`], [`Repository::verify`],
//! [`Repository::forget`] + [`Repository::prune`] for retention,
//! [`Repository::repair_index`] when an index file is damaged, and
//! [`Repository::replicate_to`] for offsite tiers. The format is described in
//! docs/repository-format.md.
//!
//! | concern | file |
//! | --- | --- |
//! | keys, Fernet tokens | `crypto.rs` |
//! | on-disk structures | `format.rs` |
//! | file access (local dir; the trait other tiers implement) | `storage.rs` |
//! | S3-compatible object storage | `storage/s3.rs` |
//! | blob sealing, packs | `pack.rs` |
//! | open/init, index, blobs and trees (from the copies too) | `repo.rs`, `repo/copies.rs` |
//! | reading, listing and picking snapshots (damaged ones kept in view) | `snapshots.rs` |
//! | lease locks | `lock.rs` |
//! | backup pipeline / the walk | `backup.rs`, `backup/walk.rs` |
//! | restore (plan, writers, the target as an open handle; checking what it wrote) | `restore.rs`, `restore/` |
//! | verify | `verify.rs` |
//! | retention, forget, prune | `prune.rs` |
//! | rebuilding the index from pack headers | `repair.rs` |
//! | replication to another tier | `replicate.rs` |
//!
//! The code is plain threads, no async: the daemon calls it from a blocking task and
//! the offline `drd restore` / `drd verify` commands call it directly. Nothing here
//! logs: what an operator should know comes back in the `warnings` of each result.

mod backup;
mod crypto;
mod error;
mod format;
mod lock;
mod pack;
mod prune;
mod repair;
mod replicate;
mod repo;
mod restore;
mod snapshots;
mod storage;
mod threads;
mod verify;

pub use backup::{BackupOptions, BackupPlan, BackupProgress, BackupSummary, Source};
pub use crypto::{generate_key_file, token_to_text, KeySet};
pub use error::{Error, Result};
pub use format::{BackupStats, BlobKind, Id, Snapshot};
pub use lock::hostname;
pub use prune::{
    apply_retention, ForgetSummary, PruneOptions, PruneSummary, Retention, RetentionDecision,
};
pub use repair::RepairSummary;
pub use replicate::ReplicateSummary;
pub use repo::{InitOptions, RepoLock, RepoOptions, Repository};
pub use restore::{
    CheckSummary, DamagedFile, Mismatch, RestoreOptions, RestoreProgress, RestoreSummary,
    DAMAGED_SUFFIX,
};
pub use snapshots::{
    at_or_before_of, latest_of, read_snapshots, select_snapshot, DamagedSnapshot, SnapshotList,
};
pub use storage::{
    is_s3, open_storage, stage_in_memory, KeptOpen, LocalDir, S3Options, S3Storage, Staged, Storage,
};
pub use verify::{Affected, Problem, VerifyOptions, VerifyProgress, VerifyReport};
