//! [`Client`] for blocking code: the backup runs on the blocking pool, and a held
//! container must be released from a guard's `Drop`.
//!
//! Each [`Blocking`] owns a small current-thread runtime instead of borrowing the
//! daemon's: the backup's threads are not runtime threads, unit tests have no runtime
//! at all, and a held container must still be released while the daemon's runtime is
//! shutting down. Only blocking code may create or drop one (Tokio refuses to drop a
//! runtime inside another).

use std::future::Future;

use super::{Client, Connect, Error, Result};

/// A connected client and the runtime that drives it.
pub struct Blocking {
    client: Client,
    runtime: tokio::runtime::Runtime,
}

impl Blocking {
    /// Connects as `how` says (see [`Client::connect`]).
    pub fn connect(how: &Connect) -> Result<Blocking> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        // The client is made inside the runtime: bollard's connector needs one.
        let client = runtime.block_on(Client::connect(how))?;
        Ok(Blocking { client, runtime })
    }

    /// Runs one or more of the client's calls to the end:
    /// `engine.run(|docker| docker.pause(id))`.
    pub fn run<'a, T, F>(&'a self, calls: impl FnOnce(&'a Client) -> F) -> T
    where
        F: Future<Output = T>,
    {
        self.runtime.block_on(calls(&self.client))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn connect_to(socket: &Path, answer_within: Duration) -> Result<Blocking> {
        Blocking::connect(&Connect {
            socket: Some(socket.to_owned()),
            answer_within,
            ..Connect::default()
        })
    }

    #[test]
    fn a_missing_socket_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let err = connect_to(&socket, Duration::from_secs(5)).err().unwrap();
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
        let err = connect_to(&socket, Duration::from_millis(500))
            .err()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("no answer within"), "{err}");
    }
}
