//! `drctl abort` after drd was killed in the middle of a shutdown: the rollback works
//! from the checkpoint record (what was signalled, what was stopped), waits for the
//! level the dead drd had signalled, and starts services again in dependency order.
//!
//! Six real processes in three levels (web -> app -> db); the apps' stops are held on
//! gates (tests/support/services.rs), so drd is SIGKILLed and restarted while they are
//! certainly still stopping, and the test lets them go only once the abort waits.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drd_integration_tests::gate::Held;
use drd_integration_tests::{audit_rows, text, Daemon};
use drd_proto::Request;

#[path = "support/services.rs"]
mod services;
use services::{gated, spec, wait_audited, Follow, Services, Spec};

const APPS: [&str; 2] = ["app1", "app2"];
const WEBS: [&str; 2] = ["web1", "web2"];
const ALL: [&str; 6] = ["web1", "web2", "app1", "app2", "db1", "db2"];

/// web1 -> app1, web2 -> app2, both apps -> db1 and db2; the apps' stops are gated.
fn three_levels(app1: Spec) -> Vec<Spec> {
    vec![
        spec("web1", &["app1"], 0.0),
        spec("web2", &["app2"], 0.0),
        app1,
        gated("app2", &["db1", "db2"]),
        spec("db1", &[], 0.0),
        spec("db2", &[], 0.0),
    ]
}

/// The `phase` steps of run 1 as (service, state), read from the checkpoint record.
fn steps(daemon: &Daemon, phase: &str) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT subject, state FROM shutdown_steps \
             WHERE run_id = 1 AND phase = ?1 AND subject != '' ORDER BY id",
        )
        .unwrap();
    stmt.query_map([phase], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Starts a shutdown, SIGKILLs drd once the app level has been signalled (both apps
/// got SIGTERM and the record says their stop began), and restarts drd at once.
/// Returns the apps held in their stops.
fn crash_while_the_apps_stop(services: &mut Services) -> (Daemon, Vec<Held>) {
    let mut daemon = Daemon::start(&services.config());
    let running = daemon.spawn_drctl(&["shutdown", "--trigger", "manual", "--yes"]);
    let held: Vec<Held> = APPS.iter().map(|app| services.stopping(app)).collect();
    let steps = steps(&daemon, "stop");
    for app in APPS {
        assert!(
            steps.contains(&(app.to_owned(), "started".to_owned())),
            "{steps:?}"
        );
    }
    daemon.kill();
    daemon.spawn(&[]);
    daemon.wait_ready();
    let out = running.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    for app in APPS {
        assert!(services.running(app), "{app} exited while held");
    }
    (daemon, held)
}

/// Starts an abort (with or without rollback) on the restarted drd, waits until it
/// says it waits for each app the dead drd signalled, then lets the apps go; returns
/// the abort's report.
fn abort_waiting_for_the_apps(
    daemon: &Daemon,
    held: Vec<Held>,
    rollback: bool,
) -> serde_json::Value {
    let mut abort = Follow::start(daemon, Request::Abort { rollback });
    for app in APPS {
        abort.until(
            app,
            "stopping",
            "waiting: SIGTERM was sent before drd was restarted",
        );
    }
    for gate in held {
        gate.release(b"");
    }
    abort.answer()
}

#[test]
fn abort_after_a_crash_waits_for_the_signalled_level_and_rolls_back_in_order() {
    let mut services = Services::start(three_levels(gated("app1", &["db1", "db2"])));
    let (daemon, held) = crash_while_the_apps_stop(&mut services);

    let abort = abort_waiting_for_the_apps(&daemon, held, true);
    assert_eq!(abort["rolled_back"], true, "{abort:#}");
    let stopped_at = abort["stopped_at"].to_string();
    assert!(stopped_at.contains("stop level 1"), "{abort:#}");
    assert_eq!(abort["problems"], serde_json::json!([]), "{abort:#}");
    let mut started: Vec<&str> = abort["started"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "started")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    started.sort_unstable();
    assert_eq!(started, ["app1", "app2", "web1", "web2"], "{abort:#}");

    // The apps were waited for (not signalled twice), came back once gone, and only
    // then the web level was started.
    for app in APPS {
        assert_eq!(services.count(app, "term"), 1, "{app} signalled twice");
        assert_eq!(services.count(app, "exit"), 1);
        assert!(
            services.first(app, "exit") < services.restarted_at(app),
            "{app} started again before it had gone"
        );
    }
    let apps_back = APPS
        .iter()
        .map(|a| services.restarted_at(a))
        .fold(f64::MIN, f64::max);
    let first_web = WEBS
        .iter()
        .map(|w| services.restarted_at(w))
        .fold(f64::MAX, f64::min);
    assert!(
        apps_back < first_web,
        "a web service was started {:.3}s before the apps were back",
        apps_back - first_web
    );
    for db in ["db1", "db2"] {
        assert_eq!(
            services.count(db, "term"),
            0,
            "{db} was never to be stopped"
        );
    }
    for name in ALL {
        assert!(services.running(name), "{name} is down after the rollback");
    }

    let audit = audit_rows(&daemon.catalog());
    let done = audit
        .iter()
        .find(|(_, a, _, _)| a == "shutdown #1 done")
        .unwrap_or_else(|| panic!("{audit:#?}"));
    assert_eq!(done.2, "ok", "{done:?}");
    assert!(done.3.starts_with("rolled back"), "{done:?}");
    let status = String::from_utf8_lossy(&daemon.drctl(&["status"]).stdout).into_owned();
    assert!(!status.contains("INTERRUPTED"), "{status}");
}

#[test]
fn abort_after_a_crash_does_not_start_a_service_whose_dependency_did_not_come_back() {
    let dir = drd_integration_tests::open_tempdir();
    let mut app1 = gated("app1", &["db1", "db2"]);
    app1.extra = format!(
        "health = {{ run = [\"/usr/bin/test\", \"-e\", \"{}\"], timeout = \"1s\" }}\n",
        dir.path().join("never").display()
    );
    let mut services = Services::start(three_levels(app1));
    let (daemon, held) = crash_while_the_apps_stop(&mut services);

    let abort = abort_waiting_for_the_apps(&daemon, held, true);
    let problems = abort["problems"].to_string();
    assert!(
        problems.contains("app1: not healthy within 1s"),
        "{abort:#}"
    );
    assert!(
        problems.contains("web1: not started: app1, which it depends on, did not start"),
        "{abort:#}"
    );
    // app2 came back, so web2 was started after it; web1 stays down.
    assert!(services.restarted_at("app2") < services.restarted_at("web2"));
    assert_eq!(services.count("web1", "start"), 1, "web1 was started");
    assert!(!services.running("web1"));
    for name in ["web2", "app1", "app2", "db1", "db2"] {
        assert!(services.running(name), "{name} is down after the rollback");
    }
    let audit = audit_rows(&daemon.catalog());
    assert!(
        audit
            .iter()
            .any(|(_, a, o, d)| a == "shutdown #1 done" && o == "failed" && d.contains("web1")),
        "{audit:#?}"
    );
}

/// drd dies while a rollback is starting a service (held before it writes its
/// pidfile): `--resume` is refused, since the run was being rolled back, and `drctl
/// abort` finishes the rollback, waiting for the start under way instead of starting
/// a second copy, then starts what depends on it.
#[test]
fn drd_killed_during_a_rollback_is_finished_by_abort_without_a_second_copy() {
    let mut mid = gated("mid", &["back"]);
    mid.start_gate = true;
    let mut services = Services::start(vec![
        spec("front", &["mid"], 0.0),
        mid,
        spec("back", &[], 0.0),
    ]);
    let mut daemon = Daemon::start(&services.config());
    let shutdown = daemon.spawn_drctl(&["shutdown", "--trigger", "manual", "--yes"]);
    let stopping = services.stopping("mid");
    let abort = daemon.spawn_drctl(&["abort"]);
    wait_audited(&daemon, "abort shutdown");
    stopping.release(b"");
    // The rollback's copy of mid is held before it writes its pidfile.
    let starting = services.starting("mid");
    assert_eq!(services.count("mid", "exit"), 1);
    assert_eq!(services.copies("mid").len(), 1);
    let rollback = steps(&daemon, "rollback");
    assert!(
        rollback.contains(&("mid".to_owned(), "started".to_owned())),
        "{rollback:?}"
    );
    daemon.kill();
    daemon.spawn(&[]);
    daemon.wait_ready();
    for client in [shutdown, abort] {
        let out = client.wait_with_output().unwrap();
        assert_ne!(out.status.code(), Some(0));
    }
    assert!(!services.running("mid"), "mid came up before drd was back");

    let out = daemon.drctl(&["shutdown", "--resume", "--yes"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        text(&out).contains("was being rolled back"),
        "{}",
        text(&out)
    );

    // drd says it waits for the start under way (a second copy would be started at
    // this step), and only then is mid let go.
    let abort = Follow::start(&daemon, Request::Abort { rollback: true });
    let step = [
        "mid",
        "starting",
        "its start began before drd was restarted",
    ];
    let abort = abort.release_at(step, starting);
    assert_eq!(abort["rolled_back"], true, "{abort:#}");
    assert!(
        abort["stopped_at"]
            .as_str()
            .unwrap()
            .contains("rollback, where drd died"),
        "{abort:#}"
    );
    assert_eq!(services.copies("mid").len(), 1, "a second mid was started");
    assert_eq!(services.count("mid", "start"), 2);
    assert!(services.restarted_at("mid") < services.restarted_at("front"));
    for name in ["front", "mid", "back"] {
        assert!(services.running(name), "{name} is down after the rollback");
    }
}

/// `drctl abort --no-rollback` after the same crash only halts, but it too waits for
/// the level the dead drd signalled: when it returns nothing is half-stopped.
#[test]
fn a_halt_after_a_crash_waits_for_the_signalled_level() {
    let mut services = Services::start(three_levels(gated("app1", &["db1", "db2"])));
    let (daemon, held) = crash_while_the_apps_stop(&mut services);

    let abort = abort_waiting_for_the_apps(&daemon, held, false);
    assert_eq!(abort["rolled_back"], false, "{abort:#}");
    assert_eq!(abort["problems"], serde_json::json!([]), "{abort:#}");
    for app in APPS {
        assert!(!services.running(app), "{app} still stopping: {abort:#}");
        assert_eq!(services.count(app, "term"), 1, "{app} signalled twice");
    }
    for name in ["web1", "web2"] {
        assert_eq!(services.count(name, "start"), 1, "{name} was started");
    }
    for db in ["db1", "db2"] {
        assert!(services.running(db), "{db} was stopped by a halt");
    }
    let audit = audit_rows(&daemon.catalog());
    assert!(
        audit
            .iter()
            .any(|(_, a, o, d)| a == "shutdown #1 done" && o == "ok" && d.starts_with("halted")),
        "{audit:#?}"
    );
}
