//! What every request handler can see: the daemon's [`Core`] (config in force,
//! catalog, audit log, workers, life cycle), its [`Backups`], its [`Shutdowns`] and the
//! socket.
//!
//! Shared state lives in layers: `drd_core::Core` holds what every layer needs,
//! `drd_backup::Backups` what the backups keep on top of it, `drd_shutdown::Shutdowns`
//! the one-shutdown slot, and [`Shared`] only what the daemon itself owns (the socket,
//! the log handle, reloading). Each layer is handed the part it needs, never `Shared`.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use drd_alerts::Alerts;
use drd_backup::Backups;
use drd_core::audit::{Actor, Outcome};
use drd_core::config::{Config, ConfigError, LoadedConfig};
use drd_core::systemd;
use drd_core::Core;
use drd_shutdown::Shutdowns;
use drd_watch::Watch;

use crate::logging::LogHandle;

/// Shared daemon state, behind an `Arc`.
pub struct Shared {
    /// What every layer needs: config, catalog, audit log, workers, stop token.
    pub core: Arc<Core>,
    /// The backups' state: running jobs, replication, tier opener, container holds.
    pub backups: Arc<Backups>,
    /// The shutdown layer: the one shutdown that runs now, if any.
    pub shutdowns: Arc<Shutdowns>,
    /// The watching layer: monitors, deadman switches, the policy.
    pub watch: Arc<Watch>,
    /// The alerts: outbox, receivers, escalation.
    pub alerts: Arc<Alerts>,
    /// Recovery drills: the one run at a time, results, the report, `validate`.
    pub drills: Arc<drd_drills::Drills>,
    /// Prometheus metrics, read from the layers above; counts control requests.
    pub metrics: Arc<drd_metrics::Metrics>,
    /// The socket it listens on (fixed at start).
    pub socket: PathBuf,
    log: Option<LogHandle>,
}

/// Handlers read the core's fields (`shared.catalog`, `shared.config()`,
/// `shared.audit(..)`) through `Shared`: every handler needs them, and the deref keeps
/// each of those reads short. The layers below never see `Shared`.
impl Deref for Shared {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Shared {
    /// State for a daemon running on `core`, logging through `log`.
    pub fn new(core: Arc<Core>, log: Option<LogHandle>) -> Shared {
        let backups = Arc::new(Backups::new(core.clone()));
        let shutdowns = Arc::new(Shutdowns::new(core.clone(), backups.clone()));
        let clock = Arc::new(drd_core::clock::SystemClock);
        let alerts = Arc::new(Alerts::new(core.clone(), clock.clone()));
        let drills = Arc::new(drd_drills::Drills::new(
            core.clone(),
            backups.clone(),
            shutdowns.clone(),
            alerts.clone(),
            clock.clone(),
        ));
        let watch = Arc::new(Watch::new(
            core.clone(),
            backups.clone(),
            shutdowns.clone(),
            alerts.clone(),
            clock,
        ));
        let metrics = Arc::new(drd_metrics::Metrics::new(watch.clone()));
        Shared {
            socket: core.config().config.daemon.socket.clone(),
            metrics,
            shutdowns,
            watch,
            alerts,
            drills,
            backups,
            core,
            log,
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
        self.core.replace_config(new.clone());
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
    if old.config.metrics.listen != new.config.metrics.listen {
        fields.push("metrics.listen");
    }
    fields
}
