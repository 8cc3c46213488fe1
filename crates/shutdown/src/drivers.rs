//! Drivers: how one kind of service is assessed, stopped, checked and started again.
//!
//! The coordinator only sees [`Driver`]; each kind lives in its own file. Every call
//! is bounded in time, so a driver whose backend does not answer becomes an error for
//! that service and never a hang of the whole shutdown.

pub mod compose;
mod docker;
mod process;
mod systemd;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use drd_core::command::{CommandError, Finished};
use drd_core::config::{DriverKind, HookConfig, ServiceConfig, SERVICE_HOOK_TIMEOUT};
use drd_core::probe::Prober;

/// A service's state before the shutdown touched it; recorded in the assess
/// checkpoint so a rollback (even by a later drd) knows what to bring back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Assessment {
    /// Whether it was running.
    pub running: bool,
    /// Its main pid, where the driver knows one.
    pub pid: Option<i32>,
    /// The process's start time (clock ticks since boot), to tell a reused pid apart.
    pub start_ticks: Option<u64>,
    /// The health check's verdict, where it has one.
    pub healthy: Option<bool>,
    /// Its restart policy (Docker `RestartPolicy`, systemd `Restart=`), to restore it.
    pub restart_policy: Option<String>,
    /// A line for people.
    pub detail: String,
}

/// How a stop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// It exited after the stop signal.
    Clean,
    /// It was killed after its timeout.
    Killed,
    /// It was not running.
    WasNotRunning,
}

/// A driver failure, for one service.
#[derive(Debug, thiserror::Error)]
#[error("{op} {target}: {message}")]
pub struct DriverError {
    /// What the driver was doing (`stop`, `start`, `assess`).
    pub op: &'static str,
    /// What it acted on (`pidfile /run/api.pid`, `unit api.service`).
    pub target: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// Result of a driver call.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// A service's driver.
pub enum Driver {
    /// A process found by its pidfile.
    Process(process::Process),
    /// A systemd unit.
    Systemd(systemd::Systemd),
    /// A Docker container.
    Docker(docker::Container),
}

impl Driver {
    /// The driver for `config`, or why there is none.
    pub fn new(config: &ServiceConfig) -> Result<Driver> {
        match config.driver {
            DriverKind::Process => Ok(Driver::Process(process::Process::new(config))),
            DriverKind::Systemd => Ok(Driver::Systemd(systemd::Systemd::new(config))),
            DriverKind::Docker => Ok(Driver::Docker(docker::Container::new(config))),
            DriverKind::Compose => Err(DriverError {
                op: "use driver",
                target: crate::plan::target(config),
                message: "none of the project's containers could be found (labels \
                          com.docker.compose.project / .service); drd's log says why"
                    .to_owned(),
            }),
        }
    }

    /// Records the service's state.
    pub async fn assess(&self) -> Result<Assessment> {
        match self {
            Driver::Process(d) => d.assess().await,
            Driver::Systemd(d) => d.assess().await,
            Driver::Docker(d) => d.assess().await,
        }
    }

    /// Stops the service: `signal`, up to `timeout` for it to go, then a kill. With
    /// `signalled` (a resumed run whose first drd already sent the signal) it only
    /// waits and kills. A service that survives comes back as an error.
    pub async fn stop(
        &self,
        before: &Assessment,
        signal: &str,
        timeout: Duration,
        signalled: bool,
    ) -> Result<Stopped> {
        match self {
            Driver::Process(d) => d.stop(before, signal, timeout, signalled).await,
            Driver::Systemd(d) => d.stop(timeout).await,
            Driver::Docker(d) => d.stop(before, timeout).await,
        }
    }

    /// Whether the service runs now.
    pub async fn is_running(&self, before: &Assessment) -> Result<bool> {
        match self {
            Driver::Process(d) => d.is_running(before),
            Driver::Systemd(d) => d.assess().await.map(|a| a.running),
            Driver::Docker(d) => d.is_running().await,
        }
    }

    /// Starts the service again (rollback), restoring what the stop changed, and
    /// waits up to `timeout` for it to run.
    pub async fn start(&self, before: &Assessment, timeout: Duration) -> Result<()> {
        match self {
            Driver::Process(d) => d.start(before, timeout).await,
            Driver::Systemd(d) => d.start(timeout).await,
            Driver::Docker(d) => d.start(before, timeout).await,
        }
    }
}

/// Runs a drain or health `hook` within its timeout; Ok when it exits 0. On timeout
/// its whole process group is ended.
pub async fn run_hook(hook: &HookConfig) -> std::result::Result<(), String> {
    let command = hook.command(SERVICE_HOOK_TIMEOUT);
    ran_ok(&hook.run, command.run().await)
}

/// Ok when `argv` ran and exited 0, else what happened, naming it.
fn ran_ok(
    argv: &[String],
    ran: std::result::Result<Finished, CommandError>,
) -> std::result::Result<(), String> {
    match ran {
        Ok(finished) if finished.success() => Ok(()),
        Ok(finished) => Err(format!("{} {finished}", argv.join(" "))),
        Err(err) => Err(err.to_string()),
    }
}

/// Asks `service`'s health check once, within its timeout: whether it is healthy.
pub async fn is_healthy(service: &ServiceConfig) -> Option<bool> {
    let health = service.health.as_ref()?;
    let probe = health.probe(service).ok()?;
    Some(Prober::new().probe(&probe, health.timeout()).await.is_ok())
}

/// Waits for `service`'s health check to pass, asking every 200 ms until its
/// timeout has passed in all (the same probe the service monitor asks).
pub async fn wait_healthy(service: &ServiceConfig) -> std::result::Result<(), String> {
    let Some(health) = &service.health else {
        return Ok(());
    };
    let probe = health.probe(service)?;
    Prober::new()
        .wait_until_ok(&probe, health.timeout())
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(health: &str) -> ServiceConfig {
        toml::from_str(&format!(
            "driver = \"process\"\npidfile = \"/run/x.pid\"\nhealth = {health}\n"
        ))
        .unwrap()
    }

    /// The rollback waits on the same probes the service monitor asks: a TCP check
    /// passes once the port listens, and the old command hook still works.
    #[tokio::test]
    async fn a_rollback_waits_on_every_kind_of_health_check() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = service(&format!(
            "{{ tcp = \"127.0.0.1:{port}\", timeout = \"1s\" }}"
        ));
        assert_eq!(wait_healthy(&tcp).await, Ok(()));
        assert_eq!(is_healthy(&tcp).await, Some(true));
        drop(listener);
        let err = wait_healthy(&tcp).await.unwrap_err();
        assert!(
            err.starts_with("not healthy within 1s: tcp 127.0.0.1:"),
            "{err}"
        );
        assert_eq!(is_healthy(&tcp).await, Some(false));

        let old = service("{ run = [\"/bin/sh\", \"-c\", \"exit 3\"], timeout = \"1s\" }");
        let err = wait_healthy(&old).await.unwrap_err();
        assert!(err.contains("exit"), "{err}");
        let none = service("{ run = [\"true\"] }");
        assert_eq!(wait_healthy(&none).await, Ok(()));
    }
}
