//! The policy through the real drd: a firing monitor check whose action is an
//! emergency shutdown stops real (fake) services with the action's trigger when
//! `[policy] automatic_shutdown = true`, and with it off stops nothing and says in the
//! audit log what it would have done, and alerts.
//!
//! The check is a load check with `fire = 0.0`: any load is at or above it, so it
//! fires on drd's first sample, whatever the machine is doing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use drd_integration_tests::{audit_rows, eventually_within, Daemon};

#[path = "support/services.rs"]
mod services;
use services::{spec, wait_audited, Services, HANG};

fn always_firing(automatic: bool) -> String {
    format!(
        r#"
[policy]
automatic_shutdown = {automatic}

[monitors.resources]
interval = "1s"
load = {{ fire = 0.0, clear = -1.0, on_fire = [{{ shutdown = "resource_exhaustion", only = ["api"] }}] }}
"#
    )
}

#[test]
fn a_firing_check_shuts_down_with_its_trigger_when_automatic_shutdown_is_on() {
    let mut services = Services::start(vec![spec("api", &["db"], 0.1), spec("db", &[], 0.1)]);
    let daemon = Daemon::start(&format!("{}{}", services.config(), always_firing(true)));

    wait_audited(&daemon, "emergency shutdown");
    // The api was stopped (by SIGTERM, which it traps and exits on); the db it
    // depends on was not in `only`'s reach and still runs.
    services.ended_by("api");
    let rows = audit_rows(&daemon.catalog());
    let started = rows.iter().find(|r| r.1 == "emergency shutdown").unwrap();
    assert_eq!(started.0, "monitor resources/load", "{started:?}");
    assert!(
        started
            .3
            .contains("triggered: resource_exhaustion, only api: resources/load fired"),
        "{started:?}"
    );
    // The run's record carries the trigger and who started it.
    let mut run = (String::new(), String::new(), String::new());
    eventually_within("the shutdown to end", HANG, || {
        let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
        run = conn
            .query_row(
                "SELECT trigger, actor, state FROM shutdown_runs ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        run.2 != "running"
    });
    assert_eq!(run.0, "resource_exhaustion");
    assert_eq!(run.1, "monitor resources/load");
    assert!(services.running("db"));
}

#[test]
fn with_automatic_shutdown_off_nothing_stops_and_the_audit_log_says_what_would_have() {
    let mut services = Services::start(vec![spec("api", &["db"], 0.1), spec("db", &[], 0.1)]);
    let daemon = Daemon::start(&format!("{}{}", services.config(), always_firing(false)));

    let would = daemon.wait_for_audit_where("the would-be shutdown", HANG, |r| {
        r.1 == "emergency shutdown" && r.2 == "refused"
    });
    assert!(
        would
            .3
            .starts_with("would shut down: shutdown resource_exhaustion only api; load:"),
        "{would:?}"
    );
    assert!(would.3.contains("automatic_shutdown is off"), "{would:?}");
    // The alert is audited after the refusal, so it may not be in the log yet.
    daemon.wait_for_audit_where("the alert of the would-be shutdown", HANG, |r| {
        r.1 == "alert"
            && r.3
                .starts_with("critical: resources/load fired: would shut down")
    });
    // The check stays fired: nothing acts again, and nothing was stopped.
    std::thread::sleep(Duration::from_secs(3));
    assert!(services.running("api") && services.running("db"));
    let out = daemon.drctl(&["monitors", "--json"]);
    assert_eq!(out.status.code(), Some(1), "a firing check: exit 1");
    let monitors: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let load = &monitors[0];
    assert_eq!(load["state"], "firing", "{monitors:#}");
    assert!(
        load["actions"][0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("would shut down"),
        "{monitors:#}"
    );
}

#[test]
fn a_check_that_fired_before_drd_died_runs_its_actions_after_the_restart_and_fires_once() {
    let dir = drd_integration_tests::open_tempdir();
    let ran = dir.path().join("ran");
    let mut daemon = Daemon::start(&format!(
        r#"
[monitors.resources]
interval = "1s"
load = {{ fire = 0.0, clear = -1.0, on_fire = [{{ exec = ["sh", "-c", "echo ran >> {ran}"] }}] }}
"#,
        ran = ran.display()
    ));
    let runs = || {
        std::fs::read_to_string(&ran)
            .unwrap_or_default()
            .lines()
            .count()
    };
    eventually_within("the action to run", HANG, || runs() == 1);
    daemon.stop_with(nix::sys::signal::Signal::SIGTERM);
    // What a drd killed after it kept the decision and before the actions ran leaves:
    // the check firing, marked pending, no action taken, no cooldown.
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    conn.execute_batch(
        "UPDATE watch_state SET value = json_set(json_set(value, '$.pending', json('true')),
                                                 '$.actions', json('[]'))
         WHERE key = 'check/resources/load';
         DELETE FROM watch_state WHERE key LIKE 'cooldown/%';",
    )
    .unwrap();
    drop(conn);
    daemon.spawn(&[]);
    daemon.wait_ready();
    daemon.wait_until("the action to run again", HANG, || runs() == 2);
    wait_audited(&daemon, "monitor actions resumed");
    let rows = audit_rows(&daemon.catalog());
    let count = |action: &str| rows.iter().filter(|r| r.1 == action).count();
    assert_eq!(count("monitor fired"), 1, "{rows:#?}");
    assert_eq!(count("monitor actions resumed"), 1, "{rows:#?}");
    // Done once: it stays done across the next cycles.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(), 2);
}
