//! `drctl abort` after drd was killed in the middle of a shutdown: the rollback works
//! from the checkpoint record (what was signalled, what was stopped), waits for the
//! level the dead drd had signalled, and starts services again in dependency order.
//!
//! Six real processes in three levels (web -> app -> db), each exiting 1 s after
//! SIGTERM; drd is SIGKILLed once the app level has been signalled and restarted at
//! once, while the apps are still stopping.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use drd_integration_tests::{audit_rows, text, Daemon};
use nix::sys::signal::Signal;

#[path = "support/services.rs"]
mod services;
use services::{drctl_in_background, spec, wait_until, Services, Spec};

const APPS: [&str; 2] = ["app1", "app2"];
const WEBS: [&str; 2] = ["web1", "web2"];
const ALL: [&str; 6] = ["web1", "web2", "app1", "app2", "db1", "db2"];

/// web1 -> app1, web2 -> app2, both apps -> db1 and db2; each exits 1 s after SIGTERM.
fn three_levels(app1: Spec) -> Vec<Spec> {
    vec![
        spec("web1", &["app1"], 1.0),
        spec("web2", &["app2"], 1.0),
        app1,
        spec("app2", &["db1", "db2"], 1.0),
        spec("db1", &[], 1.0),
        spec("db2", &[], 1.0),
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
/// Returns while the apps are still stopping.
fn crash_while_the_apps_stop(services: &mut Services) -> Daemon {
    let mut daemon = Daemon::start(&services.config());
    let running = drctl_in_background(&daemon, &["shutdown", "--trigger", "manual", "--yes"]);
    wait_until(
        "the app level to be signalled",
        Duration::from_secs(30),
        || APPS.iter().all(|app| services.count(app, "term") == 1),
    );
    let steps = steps(&daemon, "stop");
    for app in APPS {
        assert!(
            steps.contains(&(app.to_owned(), "started".to_owned())),
            "{steps:?}"
        );
    }
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(Duration::from_secs(10));
    daemon.spawn(&[]);
    daemon.wait_ready();
    let out = running.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    // The race this file is about: the abort must arrive while the apps still stop.
    for app in APPS {
        assert!(
            services.running(app),
            "{app} exited before drd was back: the test did not reproduce the race"
        );
    }
    daemon
}

#[test]
fn abort_after_a_crash_waits_for_the_signalled_level_and_rolls_back_in_order() {
    let mut services = Services::start(three_levels(spec("app1", &["db1", "db2"], 1.0)));
    let daemon = crash_while_the_apps_stop(&mut services);

    let out = daemon.drctl(&["abort"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("rolled back"), "{said}");
    assert!(said.contains("4 services started again"), "{said}");
    assert!(said.contains("stop level 1"), "{said}");
    assert!(!said.to_lowercase().contains("failed"), "{said}");

    // The apps were waited for (not signalled twice), came back, and only then the
    // web level was started.
    for app in APPS {
        assert_eq!(services.count(app, "term"), 1, "{app} signalled twice");
        assert_eq!(services.count(app, "exit"), 1);
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
    let mut app1 = spec("app1", &["db1", "db2"], 1.0);
    app1.extra = format!(
        "health = {{ run = [\"/usr/bin/test\", \"-e\", \"{}\"], timeout = \"1s\" }}\n",
        dir.path().join("never").display()
    );
    let mut services = Services::start(three_levels(app1));
    let daemon = crash_while_the_apps_stop(&mut services);

    let out = daemon.drctl(&["abort", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let abort: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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

/// drd dies while a rollback is starting a slow service (2 s to write its pidfile):
/// `--resume` is refused, since the run was being rolled back, and `drctl abort`
/// finishes the rollback, waiting for the start under way instead of starting a
/// second copy, then starts what depends on it.
#[test]
fn drd_killed_during_a_rollback_is_finished_by_abort_without_a_second_copy() {
    let mut mid = spec("mid", &["back"], 1.0);
    mid.ready_delay = 2.0;
    let mut services = Services::start(vec![
        spec("front", &["mid"], 0.0),
        mid,
        spec("back", &[], 0.0),
    ]);
    let mut daemon = Daemon::start(&services.config());
    let shutdown = drctl_in_background(&daemon, &["shutdown", "--trigger", "manual", "--yes"]);
    wait_until("mid to be told to stop", Duration::from_secs(30), || {
        services.count("mid", "term") == 1
    });
    let abort = drctl_in_background(&daemon, &["abort"]);
    wait_until(
        "the rollback to be starting mid",
        Duration::from_secs(30),
        || {
            services.count("mid", "exit") == 1
                && services.copies("mid").len() == 1
                && steps(&daemon, "rollback").contains(&("mid".to_owned(), "started".to_owned()))
        },
    );
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(Duration::from_secs(10));
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

    let out = daemon.drctl(&["abort"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("rolled back"), "{said}");
    assert!(said.contains("at rollback, where drd died"), "{said}");
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
    let mut services = Services::start(three_levels(spec("app1", &["db1", "db2"], 1.0)));
    let daemon = crash_while_the_apps_stop(&mut services);

    let out = daemon.drctl(&["abort", "--no-rollback"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("no rollback"), "{said}");
    for app in APPS {
        assert!(!services.running(app), "{app} still stopping: {said}");
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
