//! Command sources: a program's standard output, stored as one stream.
//!
//! The reader hands out the output as it comes and, at its end, checks how the
//! program ended: a non-zero exit or a timeout turns the end of the stream into an
//! error, so the repository engine fails the whole snapshot instead of storing a
//! truncated dump.

use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::BackupError;

/// How much of the command's stderr is kept for the error message.
const STDERR_TAIL: usize = 2048;

/// A running command whose stdout is read as a stream.
pub(super) struct CommandOutput {
    name: String,
    child: Child,
    stdout: ChildStdout,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    timed_out: Arc<AtomicBool>,
    timeout: Duration,
    /// Dropping this stops the timer.
    _timer: mpsc::Sender<()>,
    finished: bool,
}

impl CommandOutput {
    /// Starts `run` in its own process group, with a timer that kills the group after
    /// `timeout`.
    pub(super) fn start(
        name: &str,
        run: &[String],
        timeout: Duration,
    ) -> Result<Self, BackupError> {
        let fail = |message: String| BackupError::Source {
            source_name: format!("command {name}"),
            message,
        };
        let (program, args) = run
            .split_first()
            .ok_or_else(|| fail("no program to run".to_owned()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| fail(format!("cannot start {program}: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("no stdout pipe".to_owned()))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            let tail = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                    tail.extend_from_slice(&buf[..n]);
                    let excess = tail.len().saturating_sub(STDERR_TAIL);
                    tail.drain(..excess);
                }
            })
        });
        let timed_out = Arc::new(AtomicBool::new(false));
        let (timer, stop) = mpsc::channel::<()>();
        let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let flag = timed_out.clone();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(timeout) {
                flag.store(true, Ordering::SeqCst);
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        });
        Ok(CommandOutput {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            stderr_reader,
            timed_out,
            timeout,
            _timer: timer,
            finished: false,
        })
    }

    fn pgid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    fn check_exit(&mut self) -> io::Result<()> {
        let status = self.child.wait()?;
        self.finished = true;
        if self.timed_out.load(Ordering::SeqCst) {
            return Err(io::Error::other(format!(
                "command {} timed out after {} and was killed; nothing was stored",
                self.name,
                humantime::format_duration(self.timeout)
            )));
        }
        if status.success() {
            return Ok(());
        }
        // Anything the command left behind in its group goes too, so that its stderr
        // closes and the reader thread ends with the command's last words.
        let _ = killpg(self.pgid(), Signal::SIGKILL);
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        let said = String::from_utf8_lossy(&tail).trim().to_owned();
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            _ => "failed".to_owned(),
        };
        Err(io::Error::other(format!(
            "command {} {how}; nothing was stored{}",
            self.name,
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

impl Drop for CommandOutput {
    fn drop(&mut self) {
        if !self.finished {
            // The backup failed elsewhere: do not leave the command running.
            let _ = killpg(self.pgid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> io::Result<Vec<u8>> {
        let run = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let mut out = CommandOutput::start("t", &run, timeout).unwrap();
        let mut buf = Vec::new();
        out.read_to_end(&mut buf).map(|_| buf)
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
