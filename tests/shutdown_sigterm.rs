//! SIGTERM to drd in the middle of an emergency shutdown: drd stops (never the
//! services it protects), but only after the step under way has finished and been
//! checkpointed, and it leaves the run interrupted, as a crash would, so the next drd
//! shows it and `drctl shutdown --resume` finishes it.
//!
//! Two real processes (web -> db); web's stop is held on a gate, so SIGTERM certainly
//! arrives while its step is under way, and the test lets web go only after drd has
//! begun to stop.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drd_integration_tests::gate::finish;
use drd_integration_tests::{audit_rows, text, Daemon};
use nix::sys::signal::Signal;

#[path = "support/services.rs"]
mod services;
use services::{gated, report_service, shutdown, spec, Services, HANG};

/// The stop steps of run 1 as (service, state), and the run's state.
fn record(daemon: &Daemon) -> (Vec<(String, String)>, String) {
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT subject, state FROM shutdown_steps \
             WHERE run_id = 1 AND phase = 'stop' AND subject != '' ORDER BY id",
        )
        .unwrap();
    let steps = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let state = conn
        .query_row("SELECT state FROM shutdown_runs WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    (steps, state)
}

/// Sends SIGTERM while web's stop is held, lets web go once drd is stopping, and
/// checks that drd exits 0 after recording web's stop as done, with db untouched and
/// the run still open.
fn sigterm_while_web_stops(services: &mut Services, daemon: &mut Daemon) {
    let held = services.stopping("web");
    daemon.signal(Signal::SIGTERM);
    daemon.wait_until("drd to begin stopping", HANG, || {
        daemon.log().contains("drd stopping")
    });
    held.release(b"");
    assert_eq!(daemon.wait_exit(HANG), Some(0), "{}", daemon.log());

    let (steps, state) = record(daemon);
    assert_eq!(
        steps,
        [("web".to_owned(), "done".to_owned())],
        "web's step was cut"
    );
    assert_eq!(
        state, "running",
        "the run was closed instead of left interrupted"
    );
    assert!(!services.running("web"));
    assert!(
        services.running("db"),
        "db was stopped while drd was stopping"
    );
    let audit = audit_rows(&daemon.catalog());
    assert!(
        audit
            .iter()
            .any(|(_, a, _, d)| a == "shutdown #1 interrupted"
                && d.contains("left interrupted at stop level 0")),
        "{audit:#?}"
    );
}

/// The next drd shows the run interrupted and `--resume` finishes it without
/// signalling web again.
fn resume_finishes_it(services: &mut Services, daemon: &mut Daemon) {
    daemon.spawn(&[]);
    daemon.wait_ready();
    let status = text(&daemon.drctl(&["status"]));
    assert!(status.contains("shutdown #1"), "{status}");
    assert!(status.contains("INTERRUPTED"), "{status}");

    let (code, report) = shutdown(daemon, &["--resume", "--yes"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["outcome"], "Completed", "{report:#}");
    assert_eq!(report_service(&report, "web")["state"], "stopped");
    assert_eq!(report_service(&report, "db")["state"], "stopped");
    assert_eq!(services.count("web", "term"), 1, "web signalled twice");
    assert!(!services.running("db"));
}

#[test]
fn sigterm_mid_step_lets_the_step_finish_and_leaves_the_run_resumable() {
    let mut services = Services::start(vec![gated("web", &["db"]), spec("db", &[], 0.0)]);
    let mut daemon = Daemon::start(&services.config());
    // Started by SIGUSR1: no client follows it, so only the tracker keeps drd waiting.
    daemon.signal(Signal::SIGUSR1);
    sigterm_while_web_stops(&mut services, &mut daemon);
    resume_finishes_it(&mut services, &mut daemon);
}

#[test]
fn a_client_following_the_shutdown_is_told_it_was_left_interrupted() {
    let mut services = Services::start(vec![gated("web", &["db"]), spec("db", &[], 0.0)]);
    let mut daemon = Daemon::start(&services.config());
    let following = daemon.spawn_drctl(&["shutdown", "--trigger", "manual", "--yes"]);
    sigterm_while_web_stops(&mut services, &mut daemon);
    let out = finish(following, HANG);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("shutdown #1 stopped after its current step"),
        "{said}"
    );
    assert!(said.contains("drctl shutdown --resume"), "{said}");
    resume_finishes_it(&mut services, &mut daemon);
}
