//! The Docker driver: one container, through the engine's API (bollard).
//!
//! Before a container is stopped its restart policy is recorded (in the assess
//! checkpoint) and set to `no`, so an `always` or `unless-stopped` container does not
//! come back when dockerd restarts during or after the emergency; a rollback puts the
//! recorded policy back before starting it. `docker stop` with the service's timeout
//! lets dockerd kill the container after it; the client ([`drd_core::docker`]) bounds
//! that request by a little more, and every other one and the connection too, so an
//! engine that does not answer is an error for this service, not a hang of the
//! shutdown.

use std::time::Duration;

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{Assessment, DriverError, Result, Stopped};
use drd_core::config::ServiceConfig;
use drd_core::docker::{self, Client};

/// A container service.
pub struct Container {
    name: String,
    signal: String,
    client: OnceCell<Client>,
}

impl Container {
    pub(super) fn new(config: &ServiceConfig) -> Container {
        Container {
            name: config.container.clone().unwrap_or_default(),
            signal: config.stop_signal().to_owned(),
            client: OnceCell::new(),
        }
    }

    fn error(&self, op: &'static str, message: String) -> DriverError {
        DriverError {
            op,
            target: format!("container {}", self.name),
            message,
        }
    }

    /// The driver's wording of a Docker error: its own operation, the container, and
    /// the client's reason.
    fn request(&self, op: &'static str) -> impl Fn(docker::Error) -> DriverError + '_ {
        move |err| self.error(op, err.reason())
    }

    /// The client, connected and version-negotiated once.
    async fn docker(&self) -> Result<&Client> {
        self.client
            .get_or_try_init(|| async {
                Client::connect_local()
                    .await
                    .map_err(self.request("connect"))
            })
            .await
    }

    async fn inspect(&self, op: &'static str) -> Result<ContainerInspectResponse> {
        let docker = self.docker().await?;
        docker.inspect(&self.name).await.map_err(self.request(op))
    }

    pub(super) async fn assess(&self) -> Result<Assessment> {
        let inspect = self.inspect("assess").await?;
        let state = inspect.state.as_ref();
        let running = state.and_then(|s| s.running).unwrap_or(false);
        let restart_policy = docker::restart_policy(&inspect);
        let healthy = state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .and_then(|s| match s {
                HealthStatusEnum::HEALTHY => Some(true),
                HealthStatusEnum::UNHEALTHY => Some(false),
                _ => None,
            });
        Ok(Assessment {
            running,
            pid: state
                .and_then(|s| s.pid)
                .and_then(|p| i32::try_from(p).ok()),
            start_ticks: None,
            healthy,
            restart_policy,
            detail: state
                .and_then(|s| s.status)
                .map_or("unknown".to_owned(), |s| s.to_string()),
        })
    }

    /// Sets the restart policy (`no`, `always`, `on-failure:3`, ...).
    async fn set_policy(&self, policy: &str) -> Result<()> {
        let docker = self.docker().await?;
        docker
            .set_restart_policy(&self.name, policy)
            .await
            .map_err(self.request("set restart policy"))
    }

    pub(super) async fn stop(&self, before: &Assessment, timeout: Duration) -> Result<Stopped> {
        let inspect = self.inspect("stop").await?;
        if !inspect
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false)
        {
            return Ok(Stopped::WasNotRunning);
        }
        if before
            .restart_policy
            .as_deref()
            .is_some_and(|p| !matches!(p, "no" | ""))
        {
            self.set_policy("no").await?;
        }
        let docker = self.docker().await?;
        let t0 = Instant::now();
        if self.signal != "SIGTERM" {
            // docker stop sends the image's StopSignal; a configured one goes first.
            docker
                .kill(&self.name, &self.signal)
                .await
                .map_err(self.request("signal"))?;
        }
        docker
            .stop(&self.name, timeout)
            .await
            .map_err(self.request("stop"))?;
        let after = self.inspect("stop").await?;
        let state = after.state.as_ref();
        if state.and_then(|s| s.running).unwrap_or(false) {
            return Err(self.error(
                "stop",
                "still running after docker stop and its kill".to_owned(),
            ));
        }
        // dockerd kills with SIGKILL after the timeout: exit code 137, at the deadline.
        let killed = state.and_then(|s| s.exit_code) == Some(137) && t0.elapsed() >= timeout;
        Ok(if killed {
            Stopped::Killed
        } else {
            Stopped::Clean
        })
    }

    pub(super) async fn is_running(&self) -> Result<bool> {
        let inspect = self.inspect("check").await?;
        Ok(inspect.state.and_then(|s| s.running).unwrap_or(false))
    }

    pub(super) async fn start(&self, before: &Assessment, timeout: Duration) -> Result<()> {
        if let Some(policy) = &before.restart_policy {
            self.set_policy(policy).await?;
        }
        let docker = self.docker().await?;
        docker
            .start(&self.name)
            .await
            .map_err(self.request("start"))?;
        // Running, and healthy where the image has a health check.
        let deadline = Instant::now() + timeout;
        loop {
            let inspect = self.inspect("start").await?;
            let state = inspect.state.as_ref();
            let running = state.and_then(|s| s.running).unwrap_or(false);
            let health = state.and_then(|s| s.health.as_ref()).and_then(|h| h.status);
            let healthy = matches!(
                health,
                None | Some(
                    HealthStatusEnum::HEALTHY | HealthStatusEnum::NONE | HealthStatusEnum::EMPTY
                )
            );
            if running && healthy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.error(
                    "start",
                    format!(
                        "not {} within {}",
                        if running { "healthy" } else { "running" },
                        humantime::format_duration(timeout)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
