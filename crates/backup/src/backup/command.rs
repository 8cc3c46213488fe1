//! Command sources: a program's standard output, stored as one stream.
//!
//! The command runs through [`drd_core::command`] (its own process group, ended with
//! everything it started at its timeout or when the backup drops it). The reader
//! hands out the output as it comes and, at its end, checks how the program ended: a
//! non-zero exit or a timeout turns the end of the stream into an error, so the
//! repository engine fails the whole snapshot instead of storing a truncated dump.
//!
//! The engine reads sources on blocking threads, so the stream is a plain file and the
//! end is awaited on the runtime the backup was started from.

use std::fs::File;
use std::io::{self, Read};
use std::time::Duration;

use drd_core::command::{Command, Ending, Running};
use tokio::runtime::Handle;

use super::BackupError;

/// A running command whose stdout is read as a stream.
pub(super) struct CommandOutput {
    name: String,
    running: Running,
    stdout: File,
    runtime: Handle,
    finished: bool,
}

impl CommandOutput {
    /// Starts `run`, to be ended with its process group after `timeout`. Called from
    /// a blocking thread of drd's runtime.
    pub(super) fn start(
        name: &str,
        run: &[String],
        timeout: Duration,
    ) -> Result<Self, BackupError> {
        let fail = |message: String| BackupError::Source {
            source_name: format!("command {name}"),
            message,
        };
        let runtime = Handle::try_current().map_err(|err| {
            fail(format!(
                "cannot run it outside drd's async runtime ({err}); this is a bug in drd"
            ))
        })?;
        let mut running = Command::new(run, timeout)
            .stream_stdout()
            .spawn()
            .map_err(|err| fail(err.to_string()))?;
        let stdout = running
            .take_stdout()
            .ok_or_else(|| fail("no stdout pipe".to_owned()))?
            .into_owned_fd()
            .map_err(|err| fail(format!("cannot read its stdout: {err}")))?;
        Ok(CommandOutput {
            name: name.to_owned(),
            running,
            stdout: File::from(stdout),
            runtime,
            finished: false,
        })
    }

    fn check_exit(&mut self) -> io::Result<()> {
        let finished = self
            .runtime
            .block_on(self.running.wait())
            .map_err(io::Error::other)?;
        self.finished = true;
        if let Ending::TimedOut(after) = finished.ending {
            return Err(io::Error::other(format!(
                "command {} timed out after {} and was killed; nothing was stored",
                self.name,
                humantime::format_duration(after)
            )));
        }
        if finished.success() {
            return Ok(());
        }
        let said = finished.said();
        Err(io::Error::other(format!(
            "command {} {}; nothing was stored{}",
            self.name,
            finished.ending,
            if said.is_empty() {
                String::new()
            } else {
                format!("; it said: {said}")
            }
        )))
    }
}

impl Read for CommandOutput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.finished {
            self.check_exit()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `script`'s output the way a backup does: on a blocking thread of a
    /// multi-threaded runtime.
    fn sh(script: &str, timeout: Duration) -> io::Result<Vec<u8>> {
        let run = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime
            .block_on(runtime.spawn_blocking(move || {
                let mut out = CommandOutput::start("t", &run, timeout).unwrap();
                let mut buf = Vec::new();
                out.read_to_end(&mut buf).map(|_| buf)
            }))
            .unwrap()
    }

    #[test]
    fn output_of_a_good_command_is_read_whole() {
        let out = sh("printf 'a%.0s' $(seq 1 100000)", Duration::from_secs(10)).unwrap();
        assert_eq!(out.len(), 100_000);
    }

    #[test]
    fn a_failing_command_errors_at_the_end_with_its_stderr() {
        let err = sh(
            "echo partial; echo 'disk full' >&2; exit 3",
            Duration::from_secs(10),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exited with status 3"), "{text}");
        assert!(text.contains("disk full"), "{text}");
    }

    #[test]
    fn a_slow_command_is_killed_at_its_timeout() {
        let err = sh("echo start; sleep 30", Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
    }
}
