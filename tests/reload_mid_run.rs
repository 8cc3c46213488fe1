//! A reload in the middle of a job run: the run keeps the config it started with, for
//! its hooks, its sources and its name; the next run uses the new config (issue 11
//! item 8).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use drd_integration_tests::gate::{finish, Gate};
use drd_integration_tests::{backup_daemon, restore_args, text, Daemon};
use nix::sys::signal::Signal;

/// Job `j` of version `v`: a `before` hook that logs and (when `before_gate`) reads
/// the fifo `before.fifo`, a command source `src-V` that reads `src.fifo` (when
/// `source_gate`) or prints `V`, and an `after` hook that logs.
fn job(v: &str, before_gate: bool, source_gate: bool) -> String {
    let wait = if before_gate {
        "; cat {dir}/before.fifo"
    } else {
        ""
    };
    let source = if source_gate {
        "[\"cat\", \"{dir}/src.fifo\"]".to_owned()
    } else {
        format!("[\"echo\", \"{v}\"]")
    };
    format!(
        "[jobs.j]\ntiers = [\"local\"]\n\
         sources = [{{ kind = \"command\", name = \"src-{v}\", run = {source} }}]\n\
         before = [{{ run = [\"sh\", \"-c\", \"echo before {v} >> {{dir}}/hooks.log{wait}\"], timeout = \"5m\" }}]\n\
         after = [{{ run = [\"sh\", \"-c\", \"echo after {v} >> {{dir}}/hooks.log\"], timeout = \"5m\" }}]\n"
    )
}

/// Rewrites the config from `from` to `to` and reloads it by SIGHUP, waiting for the
/// reload to take effect.
fn reload(daemon: &Daemon, from: &str, to: &str) {
    let dir = daemon.dir.path().display().to_string();
    let old = std::fs::read_to_string(&daemon.config).unwrap();
    let (from, to) = (from.replace("{dir}", &dir), to.replace("{dir}", &dir));
    assert!(old.contains(&from), "{old}");
    std::fs::write(&daemon.config, old.replace(&from, &to)).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_audit("signal SIGHUP", "reload config", "ok");
}

fn hooks_log(daemon: &Daemon) -> String {
    std::fs::read_to_string(daemon.dir.path().join("hooks.log")).unwrap()
}

/// The paths in snapshot `id`, restored into a fresh folder, as one string per path.
fn restored_paths(daemon: &Daemon, id: &str, name: &str) -> Vec<String> {
    let target = daemon.dir.path().join(name);
    daemon.drctl_json(&restore_args(id, &target));
    let mut paths = Vec::new();
    walk(&target, &target, &mut paths);
    paths
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.strip_prefix(root).unwrap().display().to_string());
        if path.is_dir() {
            walk(root, &path, out);
        }
    }
}

/// Asserts that the paths name source `src-V` and not the other version's.
fn assert_source(paths: &[String], v: &str, not: &str) {
    let has = |s: &str| paths.iter().any(|p| p.contains(&format!("src-{s}")));
    assert!(has(v) && !has(not), "want src-{v} only: {paths:?}");
}

/// Starts job `j` at v1 with the gate `fifo` shut (in the `before` hook or the
/// source), reloads v2 meanwhile, then checks that the run was all v1 and the next
/// run all v2.
fn reload_while_held(fifo: &str, before_gate: bool, source_gate: bool) {
    let v1 = job("v1", before_gate, source_gate);
    let daemon = backup_daemon(&v1);
    let gate = Gate::new(&daemon.dir.path().join(fifo));
    let run = daemon.spawn_drctl(&["backup", "--job", "j", "--json"]);
    let held = gate.wait_reader_for("the run did not reach the gate");
    reload(&daemon, &v1, &job("v2", false, false));
    held.release(b"v1 data\n");

    let out = finish(run, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = report["snapshot"]["id"].as_str().unwrap().to_owned();
    assert_eq!(hooks_log(&daemon), "before v1\nafter v1\n");
    assert_source(&restored_paths(&daemon, &first, "first"), "v1", "v2");

    // The next run is v2's.
    let second = daemon.backup_now("j");
    assert_eq!(
        hooks_log(&daemon),
        "before v1\nafter v1\nbefore v2\nafter v2\n"
    );
    assert_source(&restored_paths(&daemon, &second, "second"), "v2", "v1");
}

#[test]
fn a_reload_during_the_before_hook_leaves_the_run_on_the_old_config() {
    reload_while_held("before.fifo", true, false);
}

#[test]
fn a_reload_during_a_slow_source_leaves_the_run_on_the_old_config() {
    reload_while_held("src.fifo", false, true);
}

#[test]
fn a_reload_that_renames_the_running_job_lets_the_run_finish() {
    let daemon = backup_daemon(&job("v1", true, false));
    let gate = Gate::new(&daemon.dir.path().join("before.fifo"));
    let run = daemon.spawn_drctl(&["backup", "--job", "j", "--json"]);
    let held = gate.wait_reader_for("the before hook did not start");
    reload(&daemon, "[jobs.j]", "[jobs.renamed]");
    held.release(b"go\n");

    let out = finish(run, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["snapshot"]["job"], "j", "{report}");
    assert_eq!(hooks_log(&daemon), "before v1\nafter v1\n");
}
