//! The backups' shared state, on top of the daemon's [`Core`].
//!
//! Every path that starts or reads backups (the scheduler, `drctl backup`, the
//! emergency backup, the shutdown's preserve phase, replication, the handlers that
//! list, prune or restore) takes a `&Backups`: the one-run-per-job set, the opener that
//! serves tier indexes from the catalog, and the registry of containers held by a
//! backup live here rather than in process-wide statics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use drd_core::Core;

use crate::backup::docker::held::HoldRegistry;
use crate::tiers::TierOpener;

/// What the backup layer keeps for the daemon's life, behind an `Arc`.
pub struct Backups {
    /// The daemon's config, catalog, audit log, workers and stop token.
    pub core: Arc<Core>,
    /// Names of the jobs running now, so that one job never runs twice at once.
    pub running_jobs: Mutex<HashSet<String>>,
    /// Woken when a snapshot lands, so the replication worker copies it offsite now.
    pub replication: tokio::sync::Notify,
    /// Opens tiers, with index files served from the catalog.
    pub tiers: TierOpener,
    /// Containers paused or stopped by backups, and the record that outlives a crash.
    pub holds: Arc<HoldRegistry>,
    /// Backup runs started since drd started, and the newest one's job: work that
    /// yields to any backup (a drill) compares it, so even a run that ended between
    /// two looks is seen.
    started: Mutex<(u64, String)>,
}

impl Backups {
    /// The backup layer of a daemon running on `core`.
    pub fn new(core: Arc<Core>) -> Backups {
        Backups {
            tiers: TierOpener::with_index_cache(core.catalog.clone()),
            holds: Arc::new(HoldRegistry::new(&core.state_dir)),
            running_jobs: Mutex::default(),
            replication: tokio::sync::Notify::new(),
            started: Mutex::default(),
            core,
        }
    }

    /// Notes that a run of `job` started.
    pub fn note_started(&self, job: &str) {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        *started = (started.0 + 1, job.to_owned());
    }

    /// Backup runs started so far, and the newest one's job.
    pub fn started(&self) -> (u64, String) {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
