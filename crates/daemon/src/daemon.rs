//! The daemon's life: start everything in order, serve until told to stop, then stop
//! everything in reverse with a deadline.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drd_core::audit::{Actor, Outcome};
use drd_core::catalog::{Catalog, CatalogError, CatalogMaintenance};
use drd_core::config::LoadedConfig;
use drd_core::systemd::{self, Watchdog};
use drd_core::workers::Supervisor;
use drd_core::Core;
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{server, socket};
use crate::logging::LogHandle;
use crate::signals;
use crate::state::Shared;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state directory could not be made.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The catalog could not be opened.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The socket could not be bound.
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// How often the catalog is checkpointed.
const CATALOG_MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// Starts the `/metrics` listener on `addr`. One that cannot bind is logged and
/// audited, and drd runs on without it: backups and monitors matter more than their
/// figures, and the scraper's `up == 0` says the rest.
async fn serve_metrics(shared: &Arc<Shared>, addr: std::net::SocketAddr, tracker: &TaskTracker) {
    match drd_metrics::server::bind(addr).await {
        Ok(listener) => {
            tracing::info!(%addr, "serving metrics on /metrics");
            tracker.spawn(drd_metrics::server::serve(
                listener,
                shared.metrics.clone(),
                shared.stopping.clone(),
                tracker.clone(),
            ));
        }
        Err(err) => {
            tracing::error!(cause = %err, "metrics listener not started");
            shared
                .audit(
                    &Actor::Daemon,
                    "start metrics listener",
                    Outcome::Failed,
                    err.to_string(),
                )
                .await;
        }
    }
}

/// Runs the daemon on `config` until SIGTERM or SIGINT.
pub async fn run(config: LoadedConfig, log: Option<LogHandle>) -> Result<(), RunError> {
    let daemon = config.config.daemon.clone();
    std::fs::create_dir_all(&daemon.state_dir)
        .and_then(|()| {
            std::fs::set_permissions(&daemon.state_dir, std::fs::Permissions::from_mode(0o750))
        })
        .map_err(|source| RunError::StateDir {
            path: daemon.state_dir.clone(),
            source,
        })?;
    let catalog = Catalog::open(&daemon.state_dir.join("catalog.db"))?;
    let signals = signals::install().map_err(RunError::Signals)?;
    let bound = socket::bind(&daemon.socket, config.socket_gid).await?;

    let stopping = CancellationToken::new();
    let tracker = TaskTracker::new();
    let supervisor = Supervisor::new(stopping.clone(), tracker.clone());
    let core = Arc::new(Core::new(
        config,
        catalog.clone(),
        supervisor.clone(),
        stopping.clone(),
    ));
    let shared = Arc::new(Shared::new(core, log));
    shared
        .audit(
            &Actor::Daemon,
            "start daemon",
            Outcome::Ok,
            format!(
                "drd {} pid {} config {} socket {}",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                shared.config().path.display(),
                daemon.socket.display()
            ),
        )
        .await;

    // Containers a killed drd left paused or stopped mid-backup run again, and every
    // hold a backup makes is audited.
    supervisor.spawn(drd_backup::backup::docker::HoldWorker::new(
        shared.backups.holds.clone(),
        shared.audit.clone(),
    ));
    // Gives the buffers of finished work back to the system (drd_core::memory).
    supervisor.spawn(drd_core::memory::MemoryKeeper::new());
    supervisor.spawn(CatalogMaintenance {
        catalog: catalog.clone(),
        every: CATALOG_MAINTENANCE_EVERY,
    });
    // Schedules are read in the host's local time, like systemd timers.
    supervisor.spawn(drd_backup::jobs::scheduler::Scheduler::new(
        Arc::new(drd_backup::jobs::scheduler::DaemonJobs {
            backups: shared.backups.clone(),
        }),
        Arc::new(drd_backup::jobs::SystemClock),
        chrono::Local,
    ));
    supervisor.spawn(drd_backup::tiers::replication::Replicator::new(
        shared.backups.clone(),
    ));
    drd_watch::spawn_workers(&shared.watch);
    supervisor.spawn(drd_alerts::worker::DeliveryWorker::new(
        shared.alerts.clone(),
    ));
    supervisor.spawn(drd_alerts::ping::DaemonPing::new(shared.core.clone()));
    supervisor.spawn(drd_drills::worker::DrillLoop::new(shared.drills.clone()));
    shared
        .metrics
        .add(Arc::new(drd_drills::metrics::DrillMetrics(
            shared.drills.clone(),
        )));
    supervisor.spawn(drd_metrics::textfile::TextfileWriter::new(
        shared.metrics.clone(),
    ));
    if let Some(addr) = shared.config().config.metrics.listen {
        serve_metrics(&shared, addr, &tracker).await;
    }
    if let Some(watchdog) = Watchdog::from_env(catalog.clone()) {
        supervisor.spawn(watchdog);
    }
    tracker.spawn(signals::run(signals, shared.clone()));

    tracing::info!(socket = %daemon.socket.display(), "drd ready");
    systemd::notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("serving on {}", daemon.socket.display())),
    ]);
    server::serve(&bound.listener, shared.clone(), tracker.clone()).await;

    // Stopping: no new connections (the accept loop has returned); idle connections
    // close, in-flight requests finish within the deadline.
    systemd::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    tracing::info!("drd stopping");
    drop(bound);
    tracker.close();
    if tokio::time::timeout(daemon.stop_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = %humantime::format_duration(daemon.stop_timeout),
            "requests still running at the stop deadline were abandoned"
        );
    }
    shared
        .audit(
            &Actor::Daemon,
            "stop daemon",
            Outcome::Ok,
            "stopped".to_owned(),
        )
        .await;
    catalog.close().await;
    tracing::info!("drd stopped");
    Ok(())
}
