//! How a command ended and what it said: the result every caller of [`super::Command`]
//! reads, and the words its messages are made of.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use super::SAID_CAP;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its program exited with this status.
    Exited(i32),
    /// Its program was killed by this signal, not by drd.
    Killed(i32),
    /// It ran past this timeout and drd killed its group.
    TimedOut(Duration),
    /// It was cancelled and drd killed its group.
    Cancelled,
}

impl Ending {
    pub(super) fn of(status: ExitStatus) -> Ending {
        match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(signal)) => Ending::Killed(signal),
            // Neither an exit code nor a signal does not happen on Unix.
            (None, None) => Ending::Exited(-1),
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Exited(code) => write!(f, "exited with status {code}"),
            Ending::Killed(signal) => write!(f, "was killed by signal {signal}"),
            Ending::TimedOut(after) => write!(
                f,
                "timed out after {} and was killed",
                humantime::format_duration(*after)
            ),
            Ending::Cancelled => f.write_str("was cancelled and killed"),
        }
    }
}

/// A command that has ended, and the tails of what it wrote.
#[derive(Debug, Clone)]
pub struct Finished {
    /// How it ended.
    pub ending: Ending,
    /// The last 64 KiB of its stdout (empty when streamed or discarded).
    pub stdout: Vec<u8>,
    /// The last 64 KiB of its stderr (empty when discarded).
    pub stderr: Vec<u8>,
}

impl Finished {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.ending == Ending::Exited(0)
    }

    /// The end of what it said, for a message: its stderr, or its stdout if it
    /// wrote nothing to stderr; trimmed, at most 2 KiB.
    pub fn said(&self) -> String {
        let bytes = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let start = bytes.len().saturating_sub(SAID_CAP);
        String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
    }
}

/// How it ended and what it said: `exited with status 3; it said: disk full`.
impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ending)?;
        match self.said() {
            said if said.is_empty() => Ok(()),
            said => write!(f, "; it said: {said}"),
        }
    }
}
