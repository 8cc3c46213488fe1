//! `drctl shutdowns`: the history of emergency shutdowns and recoveries through the
//! real drd and drctl, after a real shutdown of real processes
//! (tests/support/fake_service.py).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drd_integration_tests::{text, Daemon};

#[path = "support/services.rs"]
mod services;
use services::{shutdown, spec, Services};

#[test]
fn a_shutdown_shows_up_in_the_history_with_its_trigger_outcome_and_duration() {
    let services = Services::start(vec![spec("web", &["db"], 0.2), spec("db", &[], 0.0)]);
    let daemon = Daemon::start(&services.config());

    // Nothing has run: a line that says so, and success.
    let out = daemon.drctl(&["shutdowns"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no emergency shutdown or recovery has run yet\n"
    );
    let out = daemon.drctl(&["shutdowns", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let empty: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(empty, serde_json::json!([]));

    let (code, report) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0), "{report:#}");

    let out = daemon.drctl(&["shutdowns"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "KIND", "TRIGGER", "STARTED", "(UTC)", "DURATION", "OUTCOME", "RECOVERS", "RTO",
            "ACTOR"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["#1", "shutdown", "manual"], "{table}");
    assert!(row[3].ends_with('Z'), "a UTC time: {table}");
    // web takes 0.2 s to stop: the run took at least that.
    assert!(
        row[4] != "-" && row[4].ends_with('s'),
        "a duration: {table}"
    );
    assert_eq!(row[5..8], ["completed", "-", "-"], "{table}");
    assert_eq!(lines.next(), None, "one run only: {table}");

    let out = daemon.drctl(&["shutdowns", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &runs[0];
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs:#}");
    assert_eq!(run["run_id"], 1, "{runs:#}");
    assert_eq!(run["kind"], "shutdown", "{runs:#}");
    assert_eq!(run["trigger"], "Manual", "{runs:#}");
    assert_eq!(run["state"], "completed", "{runs:#}");
    assert!(!run["actor"].as_str().unwrap().is_empty(), "{runs:#}");
    let took = run["ended_unix_ms"].as_i64().unwrap() - run["started_unix_ms"].as_i64().unwrap();
    assert!(took >= 200, "web alone takes 0.2 s to stop: {runs:#}");

    // A run left `running` by a drd that died (written as that drd would have) is
    // interrupted, newest first, and the table says what to do about it.
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    conn.execute(
        "INSERT INTO shutdown_runs (started_ms, trigger, actor, reason, force, only_services,
                                    state, kind, recovers)
         VALUES (?1, 'manual', 'uid 0', '', 0, '', 'running', 'recovery', 1)",
        [run["ended_unix_ms"].as_i64().unwrap() + 1],
    )
    .unwrap();
    drop(conn);
    let out = daemon.drctl(&["shutdowns", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["run_id"], 2, "{runs:#}");
    assert_eq!(runs[0]["state"], "interrupted", "{runs:#}");
    assert_eq!(runs[0]["recovers"], 1, "{runs:#}");
    assert_eq!(runs[1]["state"], "completed", "{runs:#}");

    let out = daemon.drctl(&["shutdowns", "--limit", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..2],
        ["#2", "recovery"],
        "newest first, one only: {table}"
    );
    assert!(
        row.contains(&"interrupted") && row.contains(&"#1"),
        "{table}"
    );
    assert!(!table.contains("completed"), "{table}");
    assert!(
        table.contains("recovery #2 was interrupted") && table.contains("drctl recover --resume"),
        "{table}"
    );

    let out = daemon.drctl(&["shutdowns", "--limit", "0"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
}
