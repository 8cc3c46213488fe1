//! What every request handler can see: the config in force, the catalog, the audit
//! log, the workers, and the daemon's life cycle.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::audit::{Actor, AuditLog, Outcome};
use crate::backup::docker::held::HoldRegistry;
use crate::catalog::Catalog;
use crate::config::{Config, ConfigError, LoadedConfig};
use crate::logging::LogHandle;
use crate::systemd;
use crate::workers::Supervisor;

/// Shared daemon state, behind an `Arc`.
pub struct Shared {
    config: RwLock<Arc<LoadedConfig>>,
    config_loaded: RwLock<SystemTime>,
    /// When the daemon started.
    pub started: SystemTime,
    /// The socket it listens on (fixed at start).
    pub socket: PathBuf,
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
    /// Names of the jobs running now, so that one job never runs twice at once.
    pub running_jobs: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Woken when a snapshot lands, so the replication worker copies it offsite now.
    pub replication: tokio::sync::Notify,
    /// The shutdown that runs now, if any (one at a time).
    pub shutdown_slot: crate::shutdown::ShutdownSlot,
    /// Opens tiers, with index files served from the catalog.
    pub tiers: crate::tiers::TierOpener,
    /// Containers paused or stopped by backups, and the record that outlives a crash.
    pub holds: Arc<HoldRegistry>,
    log: Option<LogHandle>,
}

impl Shared {
    /// State for a daemon running `config`.
    pub fn new(
        config: LoadedConfig,
        catalog: Catalog,
        workers: Supervisor,
        stopping: CancellationToken,
        log: Option<LogHandle>,
    ) -> Shared {
        let holds = Arc::new(HoldRegistry::new(&config.config.daemon.state_dir));
        Shared {
            socket: config.config.daemon.socket.clone(),
            state_dir: config.config.daemon.state_dir.clone(),
            config: RwLock::new(Arc::new(config)),
            config_loaded: RwLock::new(SystemTime::now()),
            started: SystemTime::now(),
            audit: AuditLog::new(catalog.clone()),
            tiers: crate::tiers::TierOpener::with_index_cache(catalog.clone()),
            catalog,
            workers,
            stopping,
            running_jobs: std::sync::Mutex::default(),
            replication: tokio::sync::Notify::new(),
            shutdown_slot: crate::shutdown::ShutdownSlot::default(),
            holds,
            log,
        }
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

    /// Records an audit entry; a catalog failure is logged, since the action it records
    /// has already happened and must not be undone by a logging problem.
    pub async fn audit(&self, actor: &Actor, action: &str, outcome: Outcome, detail: String) {
        if let Err(err) = self.audit.record(actor, action, outcome, detail).await {
            tracing::error!(cause = %err, action, "cannot write the audit log");
        }
    }

    /// Re-reads the config file. A bad config is refused, audited, and the old one
    /// stays in force. Settings that only apply at start are reported as such.
    pub async fn reload(&self, actor: &Actor) -> Result<Arc<LoadedConfig>, ConfigError> {
        let old = self.config();
        let path = old.path.clone();
        let loaded = match tokio::task::spawn_blocking(move || Config::load(&path)).await {
            Ok(result) => result,
            Err(join) => Err(ConfigError::Read {
                path: old.path.clone(),
                source: std::io::Error::other(join.to_string()),
            }),
        };
        let new = match loaded {
            Ok(new) => Arc::new(new),
            Err(err) => {
                tracing::error!(cause = %err, "config reload refused; the old config stays in force");
                self.audit(actor, "reload config", Outcome::Refused, err.to_string())
                    .await;
                return Err(err);
            }
        };
        let restart_only = restart_only_changes(&old, &new);
        if let Some(log) = &self.log {
            log.set_level(&new.config.daemon.log_level);
        }
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = new.clone();
        *self
            .config_loaded
            .write()
            .unwrap_or_else(PoisonError::into_inner) = SystemTime::now();
        let mut detail = format!("reloaded {}", new.path.display());
        if !restart_only.is_empty() {
            detail.push_str(&format!(
                "; {} take effect at the next start",
                restart_only.join(", ")
            ));
        }
        self.audit(actor, "reload config", Outcome::Ok, detail)
            .await;
        systemd::status(&format!(
            "serving; config reloaded from {}",
            new.path.display()
        ));
        Ok(new)
    }
}

/// Fields a reload cannot apply to a running daemon.
fn restart_only_changes(old: &LoadedConfig, new: &LoadedConfig) -> Vec<&'static str> {
    let (a, b) = (&old.config.daemon, &new.config.daemon);
    let mut fields = Vec::new();
    if a.socket != b.socket {
        fields.push("daemon.socket");
    }
    if old.socket_gid != new.socket_gid {
        fields.push("daemon.socket_group");
    }
    if a.state_dir != b.state_dir {
        fields.push("daemon.state_dir");
    }
    fields
}
