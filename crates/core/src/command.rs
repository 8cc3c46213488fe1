//! The one way drd runs an external command: bounded in time, with everything it
//! started.
//!
//! Job hooks, drain and health hooks, command sources, a process driver's `start` and
//! `systemctl` all run programs that may hang or leave children behind. Each runs
//! through [`Command`] here, so each gets the same guarantees:
//!
//! - the command runs without a shell, stdin closed, in its own process group, with
//!   the environment and working directory it is given;
//! - it is over when its program has exited and its captured output has closed; a
//!   command still running at its timeout (or when its [`CancellationToken`] fires)
//!   has its whole group sent SIGTERM, then SIGKILL once the grace has passed, so a
//!   grandchild that holds the output or sleeps on does not outlive it;
//! - stdout and stderr are kept as bounded tails for messages, or stdout is handed to
//!   the caller as a stream (a command source's dump);
//! - the result says how it ended ([`Ending`]) and every error names the program.
//!
//! A program that fails takes its group with it at once (what it started is of no
//! use, and may hold the output open). One that exits 0 is not chased further: what
//! it left running with its output redirected elsewhere is its business (a
//! launcher's daemon). A caller that wants its command to live on, such as a
//! service's start, calls [`Running::detach`] and takes the timeout back.
//!
//! This module knows nothing of jobs, backups or shutdowns, so it can move to a lower
//! crate with the other shared pieces.

mod outcome;

pub use outcome::{Ending, Finished};

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdout};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

/// How long a command's group has between SIGTERM and SIGKILL unless
/// [`Command::grace`] says otherwise. Short, because the command is already late: an
/// emergency shutdown waits for its drain hooks, and a backup for its hooks.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// How much of each captured stream is kept: room for `systemctl show` or a probe's
/// answer, and a bound on a chatty command's memory.
const OUTPUT_CAP: usize = 64 * 1024;

/// How much of the output goes into a message ([`Finished::said`]).
const SAID_CAP: usize = 2048;

/// How long drd waits for a killed group's leader and output to go before it stops
/// waiting (a process stuck in the kernel, or one that left the group and holds the
/// output): it never hangs its caller on them.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How often a stopping group is checked for members left.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// A command to run: a program and its arguments, with a time limit.
#[derive(Debug, Clone)]
pub struct Command {
    argv: Vec<String>,
    env: Vec<(OsString, OsString)>,
    dir: Option<PathBuf>,
    timeout: Duration,
    grace: Duration,
    stdout: Output,
    stderr: Output,
    cancel: Option<CancellationToken>,
    stdin: Option<Vec<u8>>,
    run_as: Option<(u32, u32)>,
    stdin_file: Option<PathBuf>,
}

/// What becomes of one of the command's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Its tail is kept for the result.
    Tail,
    /// The caller reads it ([`Running::take_stdout`]).
    Stream,
    /// Thrown away.
    Null,
}

impl Command {
    /// `argv` (the program, then its arguments; no shell), to end within `timeout`.
    pub fn new(argv: &[String], timeout: Duration) -> Command {
        Command {
            argv: argv.to_vec(),
            env: Vec::new(),
            dir: None,
            timeout,
            grace: DEFAULT_GRACE,
            stdout: Output::Tail,
            stderr: Output::Tail,
            cancel: None,
            stdin: None,
            run_as: None,
            stdin_file: None,
        }
    }

    /// Writes `input` to its stdin, then closes it (by default stdin is /dev/null).
    /// A command that exits without reading it all is not an error.
    pub fn stdin(mut self, input: Vec<u8>) -> Command {
        self.stdin = Some(input);
        self
    }

    /// Gives it the file at `path` as its stdin: a large input (a restored dump that
    /// a drill's check reads) is not held in memory as [`Command::stdin`] would.
    pub fn stdin_file(mut self, path: impl Into<PathBuf>) -> Command {
        self.stdin_file = Some(path.into());
        self
    }

    /// Sets `key` to `value` in its environment (on top of drd's).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Command {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs it in `dir` instead of drd's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Command {
        self.dir = Some(dir.into());
        self
    }

    /// How long its group has between SIGTERM and SIGKILL ([`DEFAULT_GRACE`]).
    pub fn grace(mut self, grace: Duration) -> Command {
        self.grace = grace;
        self
    }

    /// Ends it (with its group) when `token` is cancelled.
    pub fn cancel_on(mut self, token: CancellationToken) -> Command {
        self.cancel = Some(token);
        self
    }

    /// Runs it as `uid` with the primary group `gid` and no supplementary groups
    /// (drd must be root to change them): the auth_outage drill's client, which
    /// must be a peer without a role.
    pub fn run_as(mut self, uid: u32, gid: u32) -> Command {
        self.run_as = Some((uid, gid));
        self
    }

    /// Hands its stdout to the caller ([`Running::take_stdout`]) instead of keeping a
    /// tail. The command is not over until the caller has read it to its end or
    /// dropped it, or the timeout has passed.
    pub fn stream_stdout(mut self) -> Command {
        self.stdout = Output::Stream;
        self
    }

    /// Sends stdout and stderr to /dev/null: for a command whose children live on
    /// (a service's start), which must not hold a pipe drd waits on.
    pub fn discard_output(mut self) -> Command {
        self.stdout = Output::Null;
        self.stderr = Output::Null;
        self
    }

    /// The program, as messages name it.
    pub fn program(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or_default()
    }

    /// Starts it; its timeout runs from now. Needs a Tokio runtime.
    pub fn spawn(self) -> Result<Running, CommandError> {
        let (program, args) = self.argv.split_first().ok_or(CommandError::Empty)?;
        let program = program.clone();
        let stdio = |output: Output| match output {
            Output::Tail | Output::Stream => Stdio::piped(),
            Output::Null => Stdio::null(),
        };
        let stdin =
            match (&self.stdin, &self.stdin_file) {
                (Some(_), _) => Stdio::piped(),
                (None, Some(path)) => Stdio::from(std::fs::File::open(path).map_err(|source| {
                    CommandError::Input {
                        program: program.clone(),
                        path: path.clone(),
                        source,
                    }
                })?),
                (None, None) => Stdio::null(),
            };
        let mut command = tokio::process::Command::new(&program);
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(stdin)
            .stdout(stdio(self.stdout))
            .stderr(stdio(self.stderr))
            // Its own group, so one signal reaches everything it started and none of
            // the signals meant for drd's group reach it. Not killed when the handle
            // is dropped: a detached start must survive drd's exit, and every other
            // path kills the group itself.
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        if let Some((uid, gid)) = self.run_as {
            // The standard library drops root's supplementary groups along with the uid.
            command.uid(uid).gid(gid);
        }
        let mut child = command.spawn().map_err(|source| CommandError::Start {
            program: program.clone(),
            source,
        })?;
        let pid = child.id().ok_or_else(|| CommandError::Wait {
            program: program.clone(),
            source: io::Error::other("it was reaped before drd saw its pid"),
        })?;
        let pgid = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        if let (Some(input), Some(mut pipe)) = (self.stdin, child.stdin.take()) {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                // Closed early by a command that does not read: nothing to report.
                let _ = pipe.write_all(&input).await;
            });
        }

        let (out_tail, err_tail) = (Tail::default(), Tail::default());
        let (closed_tx, closed) = mpsc::channel::<()>(1);
        let mut readers = Vec::new();
        if self.stdout == Output::Tail {
            if let Some(pipe) = child.stdout.take() {
                readers.push(read_tail(pipe, out_tail.clone(), closed_tx.clone()));
            }
        }
        if let Some(pipe) = child.stderr.take() {
            readers.push(read_tail(pipe, err_tail.clone(), closed_tx.clone()));
        }
        drop(closed_tx);
        let stdout = child.stdout.take();

        let abandon = CancellationToken::new();
        let detach = CancellationToken::new();
        let watch = Watch {
            child,
            pgid,
            deadline: Instant::now() + self.timeout,
            timeout: self.timeout,
            grace: self.grace,
            cancel: self.cancel,
            abandon: abandon.clone(),
            detach: detach.clone(),
            closed,
            readers,
            tails: [out_tail, err_tail],
        };
        Ok(Running {
            program,
            pid,
            pgid,
            stdout,
            task: Some(tokio::spawn(watch.run())),
            abandon,
            detach,
        })
    }

    /// Starts it and waits for its end.
    pub async fn run(self) -> Result<Finished, CommandError> {
        self.spawn()?.wait().await
    }
}

/// A started command. Dropping it before its end kills its whole group at once.
#[derive(Debug)]
pub struct Running {
    program: String,
    pid: u32,
    pgid: Pid,
    stdout: Option<ChildStdout>,
    task: Option<JoinHandle<io::Result<Finished>>>,
    abandon: CancellationToken,
    detach: CancellationToken,
}

impl Running {
    /// Its program's pid (also its process group's id).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Its stdout, once, when started with [`Command::stream_stdout`].
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Waits for its end: on its own, or by its timeout or cancellation. Safe to
    /// drop unfinished and call again (in a `select!`); an error once it has ended.
    pub async fn wait(&mut self) -> Result<Finished, CommandError> {
        let joined = match self.task.as_mut() {
            Some(task) => task.await,
            None => Ok(Err(io::Error::other("its end was already collected"))),
        };
        self.task = None;
        joined
            .unwrap_or_else(|err| Err(io::Error::other(err)))
            .map_err(|source| CommandError::Wait {
                program: self.program.clone(),
                source,
            })
    }

    /// Lets it run on without its timeout: for a service's start once the service
    /// is up. It is still reaped when its program exits.
    pub fn detach(mut self) {
        self.detach.cancel();
        self.task = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.task.as_ref().is_some_and(|task| !task.is_finished()) {
            // The caller gave up on it (a failed backup, a cancelled task): nothing it
            // started may run on. Killed here too, not only by the watcher, in case
            // the runtime is going away with it.
            let _ = killpg(self.pgid, Signal::SIGKILL);
            self.abandon.cancel();
        }
    }
}

/// Why a command could not be run or followed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No program was given.
    #[error("no program to run: the command is empty; name one, like [\"systemctl\", \"stop\", \"app\"]")]
    Empty,
    /// The program could not be started.
    #[error(
        "cannot start {program}: {source}; check that it is installed and executable by drd's user"
    )]
    Start {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// The file given as its stdin cannot be opened.
    #[error("cannot open {path} as the input of {program}: {source}")]
    Input {
        /// The program.
        program: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// drd lost track of it (a failed wait, or its end already collected).
    #[error("cannot wait for {program}: {source}")]
    Wait {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
}

/// The tail of one output stream, shared with its reader task.
type Tail = Arc<Mutex<Vec<u8>>>;

/// Reads `pipe` to its end, keeping the last [`OUTPUT_CAP`] bytes in `tail`;
/// `closed` is dropped at the end, so the watcher knows when every pipe has closed.
fn read_tail(
    mut pipe: impl AsyncRead + Unpin + Send + 'static,
    tail: Tail,
    closed: mpsc::Sender<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _closed = closed;
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
            tail.extend_from_slice(&buf[..n]);
            let excess = tail.len().saturating_sub(OUTPUT_CAP);
            tail.drain(..excess);
        }
    })
}

/// The task that follows one command to its end and enforces its bound.
struct Watch {
    child: Child,
    pgid: Pid,
    deadline: Instant,
    timeout: Duration,
    grace: Duration,
    cancel: Option<CancellationToken>,
    abandon: CancellationToken,
    detach: CancellationToken,
    /// Ends (`None`) once every captured pipe has closed.
    closed: mpsc::Receiver<()>,
    readers: Vec<JoinHandle<()>>,
    tails: [Tail; 2],
}

/// Why the watcher stopped waiting before the command's end.
enum Stop {
    Timeout,
    Cancel,
    Abandon,
    Detach,
}

impl Watch {
    async fn run(mut self) -> io::Result<Finished> {
        let mut status = None;
        let stop = {
            let (child, closed) = (&mut self.child, &mut self.closed);
            let status = &mut status;
            let end = async move {
                let exited = child.wait().await?;
                *status = Some(exited);
                if exited.success() {
                    while closed.recv().await.is_some() {}
                }
                io::Result::Ok(())
            };
            let cancel = self.cancel.clone();
            tokio::select! {
                ended = end => {
                    ended?;
                    None
                }
                () = sleep_until(self.deadline) => Some(Stop::Timeout),
                () = cancelled(cancel.as_ref()) => Some(Stop::Cancel),
                () = self.abandon.cancelled() => Some(Stop::Abandon),
                () = self.detach.cancelled() => Some(Stop::Detach),
            }
        };
        let ending = match (stop, status) {
            (None, Some(status)) if status.success() => Ending::of(status),
            (None, Some(status)) => {
                self.end_group().await;
                Ending::of(status)
            }
            (None, None) => unreachable!("the command ended without an exit status"),
            (Some(Stop::Detach), _) => {
                // A started service: reap it when it exits, however late.
                let status = self.child.wait().await?;
                return Ok(self.finished(Ending::of(status)));
            }
            (Some(Stop::Abandon), _) => {
                let _ = killpg(self.pgid, Signal::SIGKILL);
                self.reap().await;
                return Ok(self.finished(Ending::Cancelled));
            }
            (Some(Stop::Timeout), _) => {
                self.end_group().await;
                Ending::TimedOut(self.timeout)
            }
            (Some(Stop::Cancel), _) => {
                self.end_group().await;
                Ending::Cancelled
            }
        };
        Ok(self.finished(ending))
    }

    /// SIGTERM to the group, up to the grace for all of it to go, then SIGKILL.
    async fn end_group(&mut self) {
        let _ = killpg(self.pgid, Signal::SIGTERM);
        let (child, pgid) = (&mut self.child, self.pgid);
        let gone = async move {
            let _ = child.wait().await;
            // The leader is reaped; the group lives while any member does.
            while killpg(pgid, None).is_ok() {
                sleep(GROUP_POLL).await;
            }
        };
        if timeout(self.grace, gone).await.is_err() {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
        self.reap().await;
    }

    /// Waits a little for the killed leader and the output to go, then stops
    /// reading whatever is left.
    async fn reap(&mut self) {
        let (child, closed) = (&mut self.child, &mut self.closed);
        let _ = timeout(KILL_WAIT, async move {
            let _ = child.wait().await;
            while closed.recv().await.is_some() {}
        })
        .await;
        for reader in &self.readers {
            reader.abort();
        }
    }

    fn finished(&self, ending: Ending) -> Finished {
        let take =
            |tail: &Tail| std::mem::take(&mut *tail.lock().unwrap_or_else(PoisonError::into_inner));
        Finished {
            ending,
            stdout: take(&self.tails[0]),
            stderr: take(&self.tails[1]),
        }
    }
}

/// Fires when `token` is cancelled; never without one.
async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Command {
        let argv = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        Command::new(&argv, timeout)
    }

    /// Whether `pid` is gone (or a zombie waiting for its reaper).
    fn gone(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    }

    /// The pid a script wrote to `file`, waiting for it to be written.
    async fn pid_in(file: &std::path::Path) -> i32 {
        for _ in 0..1000 {
            if let Ok(text) = std::fs::read_to_string(file) {
                if let Ok(pid) = text.trim().parse() {
                    return pid;
                }
            }
            sleep(Duration::from_millis(10)).await;
        }
        panic!("nothing wrote a pid to {}", file.display());
    }

    /// A script that starts a grandchild sleeping a minute, writes its pid to
    /// `pidfile` and waits for it: the command outlives any short timeout.
    fn with_grandchild(pidfile: &std::path::Path) -> String {
        format!(
            "sleep 60 & echo $! > {p}.tmp; mv {p}.tmp {p}; wait",
            p = pidfile.display()
        )
    }

    #[tokio::test]
    async fn a_command_sees_its_env_and_directory_and_its_output_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let finished = sh(
            "echo \"$GREETING from $(pwd)\"; echo oops >&2; exit 3",
            Duration::from_secs(10),
        )
        .env("GREETING", "hello")
        .current_dir(dir.path())
        .run()
        .await
        .unwrap();
        assert_eq!(finished.ending, Ending::Exited(3));
        assert!(!finished.success());
        let said = String::from_utf8_lossy(&finished.stdout).into_owned();
        assert_eq!(said.trim(), format!("hello from {}", dir.path().display()));
        assert_eq!(finished.to_string(), "exited with status 3; it said: oops");
    }

    #[tokio::test]
    async fn a_command_reads_what_it_is_given_on_stdin() {
        let finished = sh("tr a-z A-Z", Duration::from_secs(10))
            .stdin(b"{\"state\":\"fired\"}".to_vec())
            .run()
            .await
            .unwrap();
        assert!(finished.success());
        assert_eq!(finished.stdout, b"{\"STATE\":\"FIRED\"}");
        // One that never reads its stdin is not held up by it.
        let finished = sh("exit 0", Duration::from_secs(10))
            .stdin(vec![b'x'; 1 << 20])
            .run()
            .await
            .unwrap();
        assert!(finished.success());
    }

    #[tokio::test]
    async fn a_command_reads_a_file_on_stdin_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("dump");
        std::fs::write(&dump, b"restored dump").unwrap();
        let finished = sh("tr a-z A-Z", Duration::from_secs(10))
            .stdin_file(&dump)
            .run()
            .await
            .unwrap();
        assert_eq!(finished.stdout, b"RESTORED DUMP");
        let err = sh("cat", Duration::from_secs(10))
            .stdin_file(dir.path().join("gone"))
            .run()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("/gone as the input of sh"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_command_that_runs_long_is_ended_with_its_grandchild() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let started = std::time::Instant::now();
        let mut running = sh(&with_grandchild(&pidfile), Duration::from_millis(500))
            .spawn()
            .unwrap();
        let grandchild = pid_in(&pidfile).await;
        let finished = running.wait().await.unwrap();
        assert_eq!(
            finished.ending,
            Ending::TimedOut(Duration::from_millis(500))
        );
        assert_eq!(finished.to_string(), "timed out after 500ms and was killed");
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(
            gone(grandchild),
            "grandchild {grandchild} outlived the timeout"
        );
    }

    #[tokio::test]
    async fn a_group_that_ignores_sigterm_is_killed_after_the_grace() {
        let started = std::time::Instant::now();
        let finished = sh(
            "trap '' TERM; sleep 60 & wait; wait",
            Duration::from_millis(200),
        )
        .grace(Duration::from_millis(300))
        .run()
        .await
        .unwrap();
        assert_eq!(
            finished.ending,
            Ending::TimedOut(Duration::from_millis(200))
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn a_grandchild_holding_the_output_is_part_of_the_command() {
        // The program exits at once, but its child keeps stdout open: the command is
        // not over, and its timeout ends the child.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let script = format!(
            "sh -c 'echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 60' & \
             while [ ! -e {p} ]; do sleep 0.01; done",
            p = pidfile.display()
        );
        let finished = sh(&script, Duration::from_millis(500)).run().await.unwrap();
        assert_eq!(
            finished.ending,
            Ending::TimedOut(Duration::from_millis(500))
        );
        let grandchild = pid_in(&pidfile).await;
        assert!(
            gone(grandchild),
            "grandchild {grandchild} outlived the timeout"
        );
    }

    #[tokio::test]
    async fn cancelling_ends_the_group_and_dropping_kills_it() {
        let dir = tempfile::tempdir().unwrap();
        let token = CancellationToken::new();
        let pidfile = dir.path().join("cancelled");
        let mut running = sh(&with_grandchild(&pidfile), Duration::from_secs(60))
            .cancel_on(token.clone())
            .spawn()
            .unwrap();
        let grandchild = pid_in(&pidfile).await;
        token.cancel();
        assert_eq!(running.wait().await.unwrap().ending, Ending::Cancelled);
        assert!(
            gone(grandchild),
            "grandchild {grandchild} outlived the cancel"
        );

        let pidfile = dir.path().join("dropped");
        let running = sh(&with_grandchild(&pidfile), Duration::from_secs(60))
            .spawn()
            .unwrap();
        let grandchild = pid_in(&pidfile).await;
        drop(running);
        for _ in 0..500 {
            if gone(grandchild) {
                return;
            }
            sleep(Duration::from_millis(10)).await;
        }
        panic!("grandchild {grandchild} outlived its dropped command");
    }

    #[tokio::test]
    async fn a_detached_command_outlives_its_timeout() {
        let mut running = sh("sleep 60", Duration::from_millis(100))
            .discard_output()
            .spawn()
            .unwrap();
        let pid = i32::try_from(running.id()).unwrap();
        assert!(running.take_stdout().is_none());
        running.detach();
        sleep(Duration::from_millis(500)).await;
        assert!(!gone(pid), "the detached command was killed");
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }

    #[tokio::test]
    async fn streamed_stdout_is_the_callers_and_a_bad_program_is_named() {
        let mut running = sh("echo streamed; echo said >&2", Duration::from_secs(10))
            .stream_stdout()
            .spawn()
            .unwrap();
        let mut out = String::new();
        running
            .take_stdout()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "streamed\n");
        let finished = running.wait().await.unwrap();
        assert!(finished.success() && finished.stdout.is_empty());
        assert_eq!(finished.said(), "said");
        assert!(running.wait().await.is_err(), "its end is collected once");

        let err = Command::new(&["/nonexistent/lb".to_owned()], Duration::from_secs(1))
            .run()
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot start /nonexistent/lb: "),
            "{err}"
        );
        let err = Command::new(&[], Duration::from_secs(1))
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, CommandError::Empty), "{err}");
    }
}
