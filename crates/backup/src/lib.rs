//! drd-backup: backups on the daemon's side, from a configured job to a snapshot in
//! every tier.
//!
//! It sits on `drd-core` (config, catalog, audit, command runner, Docker client,
//! workers) and `drd-repo` (the repository engine), and below the daemon crate, which
//! wires it to the control server and the shutdown code. Nothing here knows the
//! daemon's `Shared`: the state the backups keep is [`Backups`], built once on the
//! daemon's `Core`; the offline `drd restore` / `drd verify` use the blocking parts
//! directly.
//!
//! | module | concern |
//! | --- | --- |
//! | [`Backups`] (`backups.rs`) | shared state: running jobs, replication wake-up, tier opener, container holds |
//! | [`backup`] | sources (files, SQLite, commands, Docker consistency) into a snapshot; restore and verify |
//! | [`tiers`] | opening tiers, replication between them, the catalog's snapshot and index caches |
//! | [`jobs`] | one run of a job (`run_job`), run records, hooks, the scheduler, retention, emergency backups, `drctl jobs` |

pub mod backup;
mod backups;
pub mod jobs;
pub mod tiers;

pub use crate::backups::Backups;
