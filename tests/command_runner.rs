//! Every user of drd's command runner (job hooks, command sources, drain hooks, a
//! process driver's start) ends a command that outlives its timeout together with
//! everything it started: here each runs a command that starts a grandchild sleeping
//! ten minutes, and the grandchild must be gone soon after the timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use drd_integration_tests::{backup_daemon, text, Daemon};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[path = "support/services.rs"]
mod services;
use services::{gated, json_of, shutdown, spec, wait_audited, Services};

/// A command that starts a grandchild sleeping ten minutes, writes the grandchild's
/// pid to `pidfile`, and waits for it.
fn forks_and_waits(pidfile: &str) -> Vec<String> {
    let script = format!("sleep 600 & echo $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; wait");
    vec!["sh".to_owned(), "-c".to_owned(), script]
}

/// `argv` as a TOML array.
fn toml(argv: &[String]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Whether `pid` is gone (a zombie waiting for its reaper counts as gone).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "))
}

/// The grandchild whose pid is in `pidfile` is gone within a few seconds (its
/// command's grace), well before its ten minutes. Killed here if not, so a failing
/// run leaves nothing behind either.
fn assert_left_nothing(pidfile: &Path, user: &str) {
    let pid: i32 = std::fs::read_to_string(pidfile)
        .unwrap_or_else(|e| panic!("{user}: the command never wrote {}: {e}", pidfile.display()))
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gone(pid) {
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            panic!("{user}: the command's grandchild {pid} outlived its timeout");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `run` (a drctl call whose command times out after 1 s) and checks that it
/// ended within a minute: a grandchild that kept the command's output open would
/// hold it for its ten minutes.
fn bounded<T>(run: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = run();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the command's end waited {:?} for what it started",
        started.elapsed()
    );
    out
}

#[test]
fn a_before_hook_that_times_out_leaves_no_process_behind() {
    let hook = toml(&forks_and_waits("{dir}/hook.pid"));
    let daemon = backup_daemon(&format!(
        "[jobs.app]\ntiers = [\"local\"]\n\
         sources = [{{ kind = \"path\", path = \"{{dir}}/data\" }}]\n\
         before = [{{ run = {hook}, timeout = \"1s\" }}]\n"
    ));
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    let out = bounded(|| daemon.drctl(&["backup", "--job", "app"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("before[0] hook sh: timed out after 1s"),
        "{}",
        text(&out)
    );
    assert_left_nothing(&daemon.dir.path().join("hook.pid"), "before hook");
}

#[test]
fn a_command_source_that_times_out_leaves_no_process_behind() {
    let dump = toml(&forks_and_waits("{dir}/dump.pid"));
    let daemon = backup_daemon(&format!(
        "[jobs.dump]\ntiers = [\"local\"]\n\
         sources = [{{ kind = \"command\", name = \"pg\", run = {dump}, timeout = \"1s\" }}]\n"
    ));
    let out = bounded(|| daemon.drctl(&["backup", "--job", "dump"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("timed out after 1s"), "{}", text(&out));
    assert_eq!(daemon.drctl_json(&["backups"]).as_array().unwrap().len(), 0);
    assert_left_nothing(&daemon.dir.path().join("dump.pid"), "command source");
}

#[test]
fn a_drain_hook_that_times_out_leaves_no_process_behind() {
    let dir = drd_integration_tests::open_tempdir();
    let pidfile = dir.path().join("drain.pid");
    let mut only = spec("only", &[], 0.0);
    only.extra = format!(
        "drain = [{{ run = {}, timeout = \"1s\" }}]\n",
        toml(&forks_and_waits(&pidfile.display().to_string()))
    );
    let mut services = Services::start(vec![only]);
    let daemon = Daemon::start(&services.config());
    let (_, report) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_left_nothing(&pidfile, "drain hook");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("drain hook of only") && problems.contains("timed out after 1s"),
        "{report:#}"
    );
    // The shutdown went on without it.
    assert!(!services.running("only"));
}

#[test]
fn a_start_command_that_never_comes_up_leaves_no_process_behind() {
    let dir = drd_integration_tests::open_tempdir();
    let pidfile = dir.path().join("start.pid");
    // A rollback gives a start 30 s (the least it gives) to write the pidfile. The
    // abort comes while `only` stops, before `back` is stopped, so there is a
    // rollback to do.
    let mut only = gated("only", &["back"]);
    only.stop_timeout = "30s";
    only.start = Some(forks_and_waits(&pidfile.display().to_string()));
    let services = Services::start(vec![only, spec("back", &[], 0.0)]);
    let daemon = Daemon::start(&services.config());
    let running = daemon.spawn_drctl(&["shutdown", "--trigger", "manual", "--yes", "--json"]);
    let held = services.stopping("only");
    let abort = daemon.spawn_drctl(&["abort", "--json"]);
    wait_audited(&daemon, "abort shutdown");
    held.release(b"");
    let (code, abort) = json_of(abort);
    assert_eq!(code, Some(1), "{abort:#}");
    assert!(
        abort["problems"]
            .to_string()
            .contains("did not write a live pid to the pidfile within 30s"),
        "{abort:#}"
    );
    let _ = json_of(running);
    assert_left_nothing(&pidfile, "process start");
}
