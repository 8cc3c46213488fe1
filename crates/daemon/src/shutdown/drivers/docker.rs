//! The Docker driver: one container, through the engine's API (bollard).
//!
//! Before a container is stopped its restart policy is recorded (in the assess
//! checkpoint) and set to `no`, so an `always` or `unless-stopped` container does not
//! come back when dockerd restarts during or after the emergency; a rollback puts the
//! recorded policy back before starting it. `docker stop` with the service's timeout
//! lets dockerd kill the container after it; the client's own timeout is longer than
//! that, and connecting is bounded too, so an engine that does not answer is an error
//! for this service, not a hang of the shutdown.

use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerInspectResponse, ContainerUpdateBody, HealthStatusEnum, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{KillContainerOptionsBuilder, StopContainerOptionsBuilder};
use bollard::Docker;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{Assessment, DriverError, Result, Stopped};
use crate::config::ServiceConfig;
use crate::shutdown::plan::KILL_WAIT;

/// How long the engine may take to answer the version handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to the stop timeout for every request's client-side timeout.
const REQUEST_SLACK: Duration = Duration::from_secs(30);

/// A container service.
pub struct Container {
    name: String,
    signal: String,
    stop_timeout: Duration,
    client: OnceCell<Docker>,
}

impl Container {
    pub(super) fn new(config: &ServiceConfig) -> Container {
        Container {
            name: config.container.clone().unwrap_or_default(),
            signal: config.stop_signal().to_owned(),
            stop_timeout: config.stop_timeout(),
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

    fn request(&self, op: &'static str) -> impl Fn(DockerError) -> DriverError + '_ {
        move |err| match err {
            DockerError::DockerResponseServerError {
                status_code: 404, ..
            } => self.error(op, "there is no such container".to_owned()),
            other => self.error(op, other.to_string()),
        }
    }

    /// The client, connected and version-negotiated once (the engine may speak an
    /// older API than bollard's default).
    async fn docker(&self) -> Result<&Docker> {
        self.client
            .get_or_try_init(|| async {
                let address = std::env::var("DOCKER_HOST")
                    .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
                let no_answer = |cause: String| {
                    self.error(
                        "connect",
                        format!("the Docker engine at {address} does not answer ({cause}); is dockerd running?"),
                    )
                };
                let client = Docker::connect_with_local_defaults()
                    .map_err(|e| no_answer(e.to_string()))?
                    .with_timeout(self.stop_timeout + KILL_WAIT + REQUEST_SLACK);
                match tokio::time::timeout(CONNECT_TIMEOUT, client.negotiate_version()).await {
                    Ok(Ok(client)) => Ok(client),
                    Ok(Err(err)) => Err(no_answer(err.to_string())),
                    Err(_) => Err(no_answer(format!(
                        "no answer within {}",
                        humantime::format_duration(CONNECT_TIMEOUT)
                    ))),
                }
            })
            .await
    }

    async fn inspect(&self, op: &'static str) -> Result<ContainerInspectResponse> {
        let docker = self.docker().await?;
        docker
            .inspect_container(&self.name, None)
            .await
            .map_err(self.request(op))
    }

    pub(super) async fn assess(&self) -> Result<Assessment> {
        let inspect = self.inspect("assess").await?;
        let state = inspect.state.as_ref();
        let running = state.and_then(|s| s.running).unwrap_or(false);
        let policy = inspect
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref());
        let restart_policy = policy.and_then(|p| p.name).map(|n| {
            let retries = policy.and_then(|p| p.maximum_retry_count).unwrap_or(0);
            if n == RestartPolicyNameEnum::ON_FAILURE && retries > 0 {
                format!("on-failure:{retries}")
            } else {
                n.to_string()
            }
        });
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
        let (name, retries) = match policy.split_once(':') {
            Some((name, n)) => (name, n.parse().ok()),
            None => (policy, None),
        };
        let name = match name {
            "always" => RestartPolicyNameEnum::ALWAYS,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
            "" => RestartPolicyNameEnum::EMPTY,
            _ => RestartPolicyNameEnum::NO,
        };
        let body = ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(name),
                maximum_retry_count: retries,
            }),
            ..ContainerUpdateBody::default()
        };
        let docker = self.docker().await?;
        docker
            .update_container(&self.name, body)
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
            let options = KillContainerOptionsBuilder::new()
                .signal(&self.signal)
                .build();
            docker
                .kill_container(&self.name, Some(options))
                .await
                .map_err(self.request("signal"))?;
        }
        let secs = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(secs).build();
        docker
            .stop_container(&self.name, Some(options))
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
            .start_container(&self.name, None)
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
