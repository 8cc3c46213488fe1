//! The Docker engine as the backup code sees it: a bollard client driven from blocking
//! code, with timeouts so that an engine that does not answer is an error, not a hang.
//!
//! Each [`Engine`] owns a small current-thread runtime instead of borrowing the
//! daemon's: backups run on the blocking pool, the offline commands and the unit tests
//! have no runtime at all, and a held container must still be released while the
//! daemon's runtime is shutting down. Only blocking code may create or drop one.

use std::future::Future;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{ListContainersOptionsBuilder, StopContainerOptionsBuilder};
use bollard::{Docker, API_DEFAULT_VERSION};

/// How long the engine may take to answer the first request before drd gives up.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Added to the longest stop timeout to bound every other request.
const REQUEST_SLACK: Duration = Duration::from_secs(60);

/// What went wrong talking to the engine, worded for the backup's error message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    /// Nothing answered, or not in time.
    #[error("the Docker engine at {address} does not answer ({cause}); is dockerd running?")]
    NoAnswer {
        /// The socket tried.
        address: String,
        /// What the client saw.
        cause: String,
    },
    /// The container does not exist.
    #[error("there is no container {0:?}")]
    NoSuchContainer(String),
    /// No container carries the labels a source asks for.
    #[error("no container carries {0}")]
    NoneWithLabels(String),
    /// Any other failed request.
    #[error("{op} {target}: {source}")]
    Request {
        /// What was asked.
        op: &'static str,
        /// Of which container.
        target: String,
        /// The engine's or the client's answer.
        source: DockerError,
    },
    /// The record of held containers could not be written, so nothing was touched.
    #[error("cannot write {path} (the record of held containers), so nothing was paused or stopped: {source}")]
    Record {
        /// The record file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The record of held containers could not be read, so holds cannot be tracked.
    #[error(
        "cannot read {path} (the record of containers held by backups): {source}; check \
         that the containers it lists run, then fix or remove it"
    )]
    RecordUnreadable {
        /// The record file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The private runtime could not be built.
    #[error("cannot start the Docker client: {0}")]
    Runtime(std::io::Error),
}

/// A connected client and the runtime that drives it.
pub(crate) struct Engine {
    docker: Docker,
    runtime: tokio::runtime::Runtime,
}

/// The state of a container, as far as holding it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    /// Running and not paused.
    Running,
    /// Paused.
    Paused,
    /// Anything else: created, exited, dead, restarting, ...
    NotRunning,
}

impl RunState {
    pub(crate) fn of(inspect: &ContainerInspectResponse) -> RunState {
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

/// The address bollard connects to by default, for messages.
pub(crate) fn default_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

impl Engine {
    /// Connects to the local engine (DOCKER_HOST or /var/run/docker.sock) and agrees on
    /// an API version; any request may take up to `longest_stop` plus a minute.
    pub(crate) fn connect(longest_stop: Duration) -> Result<Engine, EngineError> {
        Self::connect_to(None, longest_stop, ANSWER_TIMEOUT)
    }

    /// Connects to `socket` (a Unix socket path), or the default when `None`.
    pub(crate) fn connect_to(
        socket: Option<&str>,
        longest_stop: Duration,
        answer_within: Duration,
    ) -> Result<Engine, EngineError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(EngineError::Runtime)?;
        let address = socket.map_or_else(default_address, |s| format!("unix://{s}"));
        let no_answer = |cause: String| EngineError::NoAnswer {
            address: address.clone(),
            cause,
        };
        let request_timeout = (longest_stop + REQUEST_SLACK).as_secs();
        let docker = runtime.block_on(async {
            // The client is made inside the runtime: bollard's connector needs one.
            let client = match socket {
                None => Docker::connect_with_local_defaults(),
                Some(path) => Docker::connect_with_unix(path, request_timeout, API_DEFAULT_VERSION),
            }
            .map_err(|e| no_answer(e.to_string()))?
            .with_timeout(longest_stop + REQUEST_SLACK);
            // The engine here may speak an older API (1.41) than the client's default.
            match tokio::time::timeout(answer_within, client.negotiate_version()).await {
                Ok(Ok(client)) => Ok(client),
                Ok(Err(err)) => Err(no_answer(err.to_string())),
                Err(_) => Err(no_answer(format!(
                    "no answer within {}",
                    humantime::format_duration(answer_within)
                ))),
            }
        })?;
        Ok(Engine { docker, runtime })
    }

    fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        self.runtime.block_on(fut)
    }

    /// `docker inspect NAME`.
    pub(crate) fn inspect(&self, name: &str) -> Result<ContainerInspectResponse, EngineError> {
        self.block_on(self.docker.inspect_container(name, None))
            .map_err(|err| match err {
                DockerError::DockerResponseServerError {
                    status_code: 404, ..
                } => EngineError::NoSuchContainer(name.to_owned()),
                source => EngineError::Request {
                    op: "inspect container",
                    target: name.to_owned(),
                    source,
                },
            })
    }

    /// Ids of every container (running or not) that carries all of `labels`.
    pub(crate) fn with_labels(&self, labels: &[String]) -> Result<Vec<String>, EngineError> {
        let filters = std::collections::HashMap::from([("label", labels.to_vec())]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .block_on(self.docker.list_containers(Some(options)))
            .map_err(|source| EngineError::Request {
                op: "list containers with labels",
                target: labels.join(", "),
                source,
            })?;
        Ok(found.into_iter().filter_map(|c| c.id).collect())
    }

    /// `docker pause ID`.
    pub(crate) fn pause(&self, id: &str) -> Result<(), EngineError> {
        self.block_on(self.docker.pause_container(id))
            .map_err(|source| request("pause", id, source))
    }

    /// `docker unpause ID`.
    pub(crate) fn unpause(&self, id: &str) -> Result<(), EngineError> {
        self.block_on(self.docker.unpause_container(id))
            .map_err(|source| request("unpause", id, source))
    }

    /// `docker stop --time TIMEOUT ID`.
    pub(crate) fn stop(&self, id: &str, timeout: Duration) -> Result<(), EngineError> {
        let secs = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(secs).build();
        self.block_on(self.docker.stop_container(id, Some(options)))
            .map_err(|source| request("stop", id, source))
    }

    /// `docker start ID`.
    pub(crate) fn start(&self, id: &str) -> Result<(), EngineError> {
        self.block_on(self.docker.start_container(id, None))
            .map_err(|source| request("start", id, source))
    }
}

fn request(op: &'static str, id: &str, source: DockerError) -> EngineError {
    EngineError::Request {
        op,
        target: id.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let err = Engine::connect_to(
            Some(socket.to_str().unwrap()),
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .err()
        .unwrap();
        let text = err.to_string();
        assert!(text.contains("does not answer"), "{text}");
        assert!(text.contains("docker.sock"), "{text}");
    }

    #[test]
    fn an_engine_that_never_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        // Accepts connections (the kernel does, up to the backlog) but never replies.
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let started = std::time::Instant::now();
        let err = Engine::connect_to(
            Some(socket.to_str().unwrap()),
            Duration::from_secs(1),
            Duration::from_millis(500),
        )
        .err()
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("no answer within"), "{err}");
    }
}
