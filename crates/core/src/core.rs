//! The state every layer shares: the config in force, the catalog, the audit log, the
//! background workers and the daemon's stop token.
//!
//! The daemon builds one [`Core`] at start and hands an `Arc` of it to the backups, the
//! shutdown code and the control server; each layer keeps its own state on top of it
//! (`drd_backup::Backups`, the daemon's `Shared`).

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::audit::{Actor, AuditLog, Outcome};
use crate::catalog::Catalog;
use crate::config::LoadedConfig;
use crate::workers::Supervisor;

/// What every layer needs from the daemon, behind an `Arc`.
pub struct Core {
    config: RwLock<Arc<LoadedConfig>>,
    config_loaded: RwLock<SystemTime>,
    /// When the daemon started.
    pub started: SystemTime,
    /// Its state directory (fixed at start).
    pub state_dir: PathBuf,
    /// The catalog.
    pub catalog: Catalog,
    /// The audit log.
    pub audit: AuditLog,
    /// The background workers.
    pub workers: Supervisor,
    /// Cancelled when the daemon begins to stop.
    pub stopping: CancellationToken,
    /// Outbound healthchecks-style pings (jobs, drd itself).
    pub pinger: crate::http::Pinger,
}

impl Core {
    /// State for a daemon running `config`.
    pub fn new(
        config: LoadedConfig,
        catalog: Catalog,
        workers: Supervisor,
        stopping: CancellationToken,
    ) -> Core {
        Core {
            state_dir: config.config.daemon.state_dir.clone(),
            config: RwLock::new(Arc::new(config)),
            config_loaded: RwLock::new(SystemTime::now()),
            started: SystemTime::now(),
            audit: AuditLog::new(catalog.clone()),
            catalog,
            workers,
            stopping,
            pinger: crate::http::Pinger::default(),
        }
    }

    /// A core for a library test: `config` (TOML) loaded as `DIR/drd.toml`, the
    /// catalog at `DIR/catalog.db`, workers that nobody waits for.
    #[cfg(any(test, feature = "test-support"))]
    pub fn for_test(dir: &std::path::Path, config: &str) -> Core {
        let config = crate::config::Config::load_str(&dir.join("drd.toml"), config)
            .unwrap_or_else(|err| panic!("test config: {err}"));
        let catalog = Catalog::open(&dir.join("catalog.db"))
            .unwrap_or_else(|err| panic!("test catalog: {err}"));
        let token = CancellationToken::new();
        let workers = Supervisor::new(token.clone(), tokio_util::task::TaskTracker::new());
        Core::new(config, catalog, workers, token)
    }

    /// The config in force. A snapshot: a reload does not change what the caller holds.
    pub fn config(&self) -> Arc<LoadedConfig> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When the config in force was loaded.
    pub fn config_loaded(&self) -> SystemTime {
        *self
            .config_loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `new` in force (a reload) and notes when. Callers holding the old config
    /// keep it until they ask again.
    pub fn replace_config(&self, new: Arc<LoadedConfig>) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = new;
        *self
            .config_loaded
            .write()
            .unwrap_or_else(PoisonError::into_inner) = SystemTime::now();
    }

    /// Records an audit entry; a catalog failure is logged, since the action it records
    /// has already happened and must not be undone by a logging problem.
    pub async fn audit(&self, actor: &Actor, action: &str, outcome: Outcome, detail: String) {
        if let Err(err) = self.audit.record(actor, action, outcome, detail).await {
            tracing::error!(cause = %err, action, "cannot write the audit log");
        }
    }
}
