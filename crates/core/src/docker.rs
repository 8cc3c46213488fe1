//! The one way drd talks to the Docker engine.
//!
//! The backup source, the shutdown driver and compose discovery all need the same
//! things from dockerd: connect to it (DOCKER_HOST or `/var/run/docker.sock`), agree on
//! an API version (the engine may speak an older one than bollard's default), bound
//! every call in time so that a wedged engine is an error and never a hang, and say in
//! the error what to do. [`Client`] does that once, asynchronously; [`Blocking`] drives
//! it from the backup's blocking code.
//!
//! This module knows nothing of backups, shutdowns or the daemon: it is the layer they
//! stand on.

mod blocking;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, ContainerUpdateBody,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{Docker, API_DEFAULT_VERSION};

pub use self::blocking::Blocking;

/// How long the engine may take to answer the version handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long any request other than a stop may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Added to a stop's own timeout (after which dockerd kills the container) to bound
/// the stop request.
pub const STOP_SLACK: Duration = Duration::from_secs(60);

/// bollard's own client-side timeout: longer than any bound drd sets, so that drd's
/// (which knows what it was doing) fires first.
const BOLLARD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What went wrong talking to the engine; every message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing answered at the engine's address, or not in time for the handshake.
    #[error("the Docker engine at {address} does not answer ({cause}); is dockerd running?")]
    NoAnswer {
        /// The address tried (`unix:///var/run/docker.sock`).
        address: String,
        /// What the client saw.
        cause: String,
    },
    /// A request failed.
    #[error("{op} {target}: {problem}")]
    Request {
        /// What was asked (`inspect container`, `stop container`).
        op: &'static str,
        /// Of which container or labels.
        target: String,
        /// What went wrong.
        problem: Problem,
    },
    /// The private runtime of a [`Blocking`] client could not be built.
    #[error(
        "cannot start the Docker client: {0}; the host may be out of threads or file descriptors"
    )]
    Runtime(std::io::Error),
}

/// Why one request failed.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The container does not exist.
    #[error("there is no such container (`docker ps -a` lists them; check the name)")]
    NoSuchContainer,
    /// The engine answered with an error.
    #[error("the Docker engine refused it (HTTP {status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// The engine took longer than the request's bound.
    #[error(
        "the Docker engine did not answer within {}; is dockerd overloaded or hung? \
         (`docker info` shows whether it answers)", humantime::format_duration(*after)
    )]
    Timeout {
        /// The bound.
        after: Duration,
    },
    /// Anything else the client reported.
    #[error(transparent)]
    Client(BollardError),
}

/// Result of a Docker call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The problem alone, without the operation and target, for callers that name
    /// those their own way.
    pub fn reason(&self) -> String {
        match self {
            Error::Request { problem, .. } => problem.to_string(),
            other => other.to_string(),
        }
    }

    /// True when the container asked about does not exist.
    pub fn is_no_such_container(&self) -> bool {
        matches!(
            self,
            Error::Request {
                problem: Problem::NoSuchContainer,
                ..
            }
        )
    }
}

/// Where the engine is and how patiently to wait for it.
#[derive(Debug, Clone)]
pub struct Connect {
    /// A Unix socket path; `None` for DOCKER_HOST (a `unix://` one) or
    /// `/var/run/docker.sock`.
    pub socket: Option<PathBuf>,
    /// How long the version handshake may take.
    pub answer_within: Duration,
    /// How long every request other than a stop may take.
    pub request_timeout: Duration,
}

impl Default for Connect {
    fn default() -> Connect {
        Connect {
            socket: None,
            answer_within: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

impl Connect {
    /// The address this connects to, for messages.
    pub fn address(&self) -> String {
        match &self.socket {
            Some(path) => format!("unix://{}", path.display()),
            None => std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned()),
        }
    }
}

/// A connected, version-negotiated client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    docker: Docker,
    address: String,
    request_timeout: Duration,
}

impl Client {
    /// Connects to the local engine with the default bounds.
    pub async fn connect_local() -> Result<Client> {
        Client::connect(&Connect::default()).await
    }

    /// Connects as `how` says and agrees on an API version. Must run inside a Tokio
    /// runtime (bollard's connector needs one).
    pub async fn connect(how: &Connect) -> Result<Client> {
        let address = how.address();
        let no_answer = |cause: String| Error::NoAnswer {
            address: address.clone(),
            cause,
        };
        let client = match &how.socket {
            None => Docker::connect_with_local_defaults(),
            Some(path) => Docker::connect_with_unix(
                &path.to_string_lossy(),
                BOLLARD_TIMEOUT.as_secs(),
                API_DEFAULT_VERSION,
            ),
        }
        .map_err(|e| no_answer(e.to_string()))?
        .with_timeout(BOLLARD_TIMEOUT);
        let docker = match tokio::time::timeout(how.answer_within, client.negotiate_version()).await
        {
            Ok(Ok(docker)) => docker,
            Ok(Err(err)) => return Err(no_answer(err.to_string())),
            Err(_) => {
                return Err(no_answer(format!(
                    "no answer within {}",
                    humantime::format_duration(how.answer_within)
                )))
            }
        };
        Ok(Client {
            docker,
            address,
            request_timeout: how.request_timeout,
        })
    }

    /// The address connected to, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Runs one request within `bound`, translating what can go wrong.
    async fn call<T>(
        &self,
        op: &'static str,
        target: &str,
        bound: Duration,
        request: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<T> {
        let problem = match tokio::time::timeout(bound, request).await {
            Ok(Ok(value)) => return Ok(value),
            Err(_) => Problem::Timeout { after: bound },
            Ok(Err(err)) => match err {
                BollardError::DockerResponseServerError {
                    status_code: 404, ..
                } => Problem::NoSuchContainer,
                BollardError::DockerResponseServerError {
                    status_code,
                    message,
                } => Problem::Refused {
                    status: status_code,
                    message,
                },
                BollardError::RequestTimeoutError => Problem::Timeout { after: bound },
                BollardError::IOError { .. }
                | BollardError::HyperLegacyError { .. }
                | BollardError::SocketNotFoundError(_) => {
                    return Err(Error::NoAnswer {
                        address: self.address.clone(),
                        cause: format!("{op} {target}: {err}"),
                    })
                }
                other => Problem::Client(other),
            },
        };
        Err(Error::Request {
            op,
            target: target.to_owned(),
            problem,
        })
    }

    /// `docker inspect NAME`.
    pub async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse> {
        let request = self.docker.inspect_container(name, None);
        self.call("inspect container", name, self.request_timeout, request)
            .await
    }

    /// Every container, running or not, that carries all of `labels` (`key=value` or
    /// `key`).
    pub async fn with_labels(&self, labels: &[String]) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([("label", labels.to_vec())]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let request = self.docker.list_containers(Some(options));
        self.call(
            "list containers with",
            &format!(
                "label{} {}",
                if labels.len() > 1 { "s" } else { "" },
                labels.join(", ")
            ),
            self.request_timeout,
            request,
        )
        .await
    }

    /// `docker pause NAME`.
    pub async fn pause(&self, name: &str) -> Result<()> {
        let request = self.docker.pause_container(name);
        self.call("pause container", name, self.request_timeout, request)
            .await
    }

    /// `docker unpause NAME`.
    pub async fn unpause(&self, name: &str) -> Result<()> {
        let request = self.docker.unpause_container(name);
        self.call("unpause container", name, self.request_timeout, request)
            .await
    }

    /// `docker stop --time TIMEOUT NAME`: dockerd kills the container after `timeout`;
    /// the request is bounded by that plus [`STOP_SLACK`].
    pub async fn stop(&self, name: &str, timeout: Duration) -> Result<()> {
        let secs = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(secs).build();
        let request = self.docker.stop_container(name, Some(options));
        self.call("stop container", name, timeout + STOP_SLACK, request)
            .await
    }

    /// `docker start NAME`.
    pub async fn start(&self, name: &str) -> Result<()> {
        let request = self.docker.start_container(name, None);
        self.call("start container", name, self.request_timeout, request)
            .await
    }

    /// `docker kill --signal SIGNAL NAME`.
    pub async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        let request = self.docker.kill_container(name, Some(options));
        self.call("signal container", name, self.request_timeout, request)
            .await
    }

    /// `docker update --restart POLICY NAME`, with `policy` as [`restart_policy`]
    /// writes it (`no`, `always`, `unless-stopped`, `on-failure:3`).
    pub async fn set_restart_policy(&self, name: &str, policy: &str) -> Result<()> {
        let (kind, retries) = match policy.split_once(':') {
            Some((kind, n)) => (kind, n.parse().ok()),
            None => (policy, None),
        };
        let kind = match kind {
            "always" => RestartPolicyNameEnum::ALWAYS,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
            "" => RestartPolicyNameEnum::EMPTY,
            _ => RestartPolicyNameEnum::NO,
        };
        let body = ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(kind),
                maximum_retry_count: retries,
            }),
            ..ContainerUpdateBody::default()
        };
        let request = self.docker.update_container(name, body);
        self.call(
            "set the restart policy of container",
            name,
            self.request_timeout,
            request,
        )
        .await
    }
}

/// The container's restart policy as `docker run --restart` writes it
/// (`on-failure:3`), if it has one.
pub fn restart_policy(inspect: &ContainerInspectResponse) -> Option<String> {
    let policy = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.as_ref())?;
    let name = policy.name?;
    let retries = policy.maximum_retry_count.unwrap_or(0);
    Some(
        if name == RestartPolicyNameEnum::ON_FAILURE && retries > 0 {
            format!("on-failure:{retries}")
        } else {
            name.to_string()
        },
    )
}

/// Whether a container runs, as far as pausing or stopping it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Running and not paused.
    Running,
    /// Paused.
    Paused,
    /// Anything else: created, exited, dead, restarting, ...
    NotRunning,
}

impl RunState {
    /// The state `inspect` shows.
    pub fn of(inspect: &ContainerInspectResponse) -> RunState {
        let state = inspect.state.as_ref();
        let status = state.and_then(|s| s.status);
        if status == Some(ContainerStateStatusEnum::PAUSED)
            || state.and_then(|s| s.paused).unwrap_or(false)
        {
            RunState::Paused
        } else if status == Some(ContainerStateStatusEnum::RUNNING) {
            RunState::Running
        } else {
            RunState::NotRunning
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_read_as_docker_run_writes_them() {
        let with = |name, retries| ContainerInspectResponse {
            host_config: Some(bollard::models::HostConfig {
                restart_policy: Some(RestartPolicy {
                    name: Some(name),
                    maximum_retry_count: retries,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            restart_policy(&with(RestartPolicyNameEnum::ON_FAILURE, Some(3))).as_deref(),
            Some("on-failure:3")
        );
        assert_eq!(
            restart_policy(&with(RestartPolicyNameEnum::UNLESS_STOPPED, None)).as_deref(),
            Some("unless-stopped")
        );
        assert_eq!(restart_policy(&ContainerInspectResponse::default()), None);
    }
}
