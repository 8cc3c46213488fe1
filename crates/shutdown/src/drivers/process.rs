//! The process driver: a service is the process whose pid is in its pidfile.
//!
//! Liveness comes from `/proc/PID/stat`: a zombie counts as gone (its parent may not
//! have reaped it yet), and the process's start time is compared with the one seen
//! at assessment, so a pid reused by an unrelated process is never signalled or
//! mistaken for the service. Stops poll every few milliseconds: the waits this adds
//! are what `bench/shutdown` measures.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::{Assessment, DriverError, Result, Stopped};
use crate::plan::KILL_WAIT;
use drd_core::command::{Command, Ending};
use drd_core::config::ServiceConfig;

/// How often a stopping process is looked at.
const POLL: Duration = Duration::from_millis(5);

/// A process service.
pub struct Process {
    pidfile: PathBuf,
    start: Vec<String>,
}

impl Process {
    pub(super) fn new(config: &ServiceConfig) -> Process {
        Process {
            pidfile: config.pidfile.clone().unwrap_or_default(),
            start: config.start.clone(),
        }
    }

    fn error(&self, op: &'static str, message: String) -> DriverError {
        DriverError {
            op,
            target: format!("pidfile {}", self.pidfile.display()),
            message,
        }
    }

    fn read_pid(&self) -> Result<Option<i32>> {
        match std::fs::read_to_string(&self.pidfile) {
            Ok(text) => {
                text.trim().parse::<i32>().map(Some).map_err(|_| {
                    self.error("read pid", format!("holds {:?}, not a pid", text.trim()))
                })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.error("read pid", err.to_string())),
        }
    }

    pub(super) async fn assess(&self) -> Result<Assessment> {
        let Some(pid) = self.read_pid()? else {
            return Ok(Assessment {
                detail: "no pidfile: not running".to_owned(),
                ..Assessment::default()
            });
        };
        Ok(match proc_state(pid) {
            Some(ticks) => Assessment {
                running: true,
                pid: Some(pid),
                start_ticks: Some(ticks),
                detail: format!("pid {pid}"),
                ..Assessment::default()
            },
            None => Assessment {
                pid: Some(pid),
                detail: format!("pid {pid} is not running (stale pidfile)"),
                ..Assessment::default()
            },
        })
    }

    pub(super) fn is_running(&self, before: &Assessment) -> Result<bool> {
        // The pid recorded at assessment, or one the pidfile names now (a service
        // restarted by something else).
        if let (Some(pid), Some(ticks)) = (before.pid, before.start_ticks) {
            if proc_state(pid) == Some(ticks) {
                return Ok(true);
            }
        }
        match self.read_pid()? {
            Some(pid) if Some(pid) != before.pid => Ok(proc_state(pid).is_some()),
            _ => Ok(false),
        }
    }

    pub(super) async fn stop(
        &self,
        before: &Assessment,
        signal: &str,
        timeout: Duration,
        signalled: bool,
    ) -> Result<Stopped> {
        let (Some(pid), Some(ticks)) = (before.pid, before.start_ticks) else {
            return Ok(Stopped::WasNotRunning);
        };
        let signal = Signal::from_str(signal)
            .map_err(|err| self.error("stop", format!("signal {signal}: {err}")))?;
        let alive = || proc_state(pid) == Some(ticks);
        if !alive() {
            return Ok(Stopped::WasNotRunning);
        }
        if signalled {
            // Sent by the drd that died; a second one would only restart the
            // service's own shutdown handling.
        } else if let Err(err) = kill(Pid::from_raw(pid), signal) {
            if alive() {
                return Err(self.error("stop", format!("cannot send {signal} to pid {pid}: {err}")));
            }
            return Ok(Stopped::Clean);
        }
        if wait_gone(alive, timeout).await {
            return Ok(Stopped::Clean);
        }
        if let Err(err) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
            if alive() {
                return Err(self.error("kill", format!("cannot send SIGKILL to pid {pid}: {err}")));
            }
        }
        if wait_gone(alive, KILL_WAIT).await {
            return Ok(Stopped::Killed);
        }
        Err(self.error(
            "kill",
            format!(
                "pid {pid} is still there {} after SIGKILL (stuck in the kernel?)",
                humantime::format_duration(KILL_WAIT)
            ),
        ))
    }

    pub(super) async fn start(&self, before: &Assessment, timeout: Duration) -> Result<()> {
        if self.start.is_empty() {
            return Err(self.error(
                "start",
                "no start command is configured (services.NAME.start); start it by hand".to_owned(),
            ));
        }
        // Its own process group, so it is not hit by signals meant for drd's group.
        // Bounded by `timeout` until the service is up: a start that hangs without
        // writing the pidfile is ended with everything it started.
        let mut running = Command::new(&self.start, timeout)
            .discard_output()
            .spawn()
            .map_err(|err| self.error("start", err.to_string()))?;
        // Up once the pidfile names a live process other than the one stopped. A
        // start command that fails before that is reported at once; one that exits 0
        // (a launcher that forks the service) is given the time to write it.
        let deadline = Instant::now() + timeout;
        let mut exited = false;
        loop {
            if let Ok(Some(pid)) = self.read_pid() {
                if let Some(ticks) = proc_state(pid) {
                    if before.pid != Some(pid) || before.start_ticks != Some(ticks) {
                        // Up: it lives on, reaped when it exits.
                        running.detach();
                        return Ok(());
                    }
                }
            }
            if exited {
                if Instant::now() >= deadline {
                    return Err(self.never_up(running.id(), timeout, ""));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            // Until it exits, the runner bounds it (and ends its group at the timeout).
            tokio::select! {
                ended = running.wait() => {
                    let finished = ended.map_err(|err| self.error("start", err.to_string()))?;
                    if let Ending::TimedOut(_) = finished.ending {
                        let ended = "; it was ended with its process group";
                        return Err(self.never_up(running.id(), timeout, ended));
                    }
                    if !finished.success() {
                        return Err(self.error(
                            "start",
                            format!(
                                "{} {} before the pidfile named a live process; run it \
                                 by hand to see why",
                                self.start.join(" "),
                                finished.ending
                            ),
                        ));
                    }
                    exited = true;
                }
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    /// The start command (pid `pid`) gave no live pid within `timeout`; `then` says
    /// what became of it.
    fn never_up(&self, pid: u32, timeout: Duration, then: &str) -> DriverError {
        self.error(
            "start",
            format!(
                "{} (pid {pid}) did not write a live pid to the pidfile within {}{then}",
                self.start.join(" "),
                humantime::format_duration(timeout)
            ),
        )
    }
}

/// Waits until `alive` is false, up to `timeout`; true if it went.
async fn wait_gone(alive: impl Fn() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !alive() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The start time (field 22 of `/proc/PID/stat`) of a live, non-zombie process.
fn proc_state(pid: i32) -> Option<u64> {
    start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time in one `/proc/PID/stat` line, or `None` for a zombie or a dead one.
fn start_time(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // After the state come fields 4..; start time is field 22, the 19th after state.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_has_a_start_time() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let own = proc_state(pid).expect("this test's own process is alive");
        // A child started after this process started no earlier, and keeps its time.
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let child_pid = i32::try_from(child.id()).unwrap();
        let started = proc_state(child_pid).expect("the child is alive");
        assert!(started >= own, "child {started} before parent {own}");
        assert_eq!(proc_state(child_pid), Some(started));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn the_start_time_is_field_22_even_when_the_name_holds_parentheses() {
        // Fields 4 to 21 hold their own numbers; field 22, the start time, is 777.
        let middle: Vec<String> = (4..=21).map(|f| f.to_string()).collect();
        let stat = |name: &str, state: &str| {
            format!("4242 ({name}) {state} {} 777 123456\n", middle.join(" "))
        };
        assert_eq!(start_time(&stat("sh", "S")), Some(777));
        assert_eq!(start_time(&stat("a) S 1 (b", "R")), Some(777));
        assert_eq!(start_time(&stat("we ird) Z", "D")), Some(777));
        assert_eq!(start_time(&stat("sh", "Z")), None, "a zombie is gone");
        assert_eq!(start_time(&stat("sh", "X")), None, "a dead one is gone");
        assert_eq!(start_time("4242 (sh"), None, "a torn line is no answer");
        assert_eq!(start_time("4242 (sh)"), None, "a torn line is no answer");
    }

    #[tokio::test]
    async fn a_reaped_child_is_gone_and_a_zombie_too() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Not reaped yet: a zombie once it exits, which counts as gone.
        assert!(wait_gone(|| proc_state(pid).is_some(), Duration::from_secs(5)).await);
        child.wait().unwrap();
    }
}
