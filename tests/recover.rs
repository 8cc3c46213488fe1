//! Recovery through the real drd and drctl, on fake process services
//! (support/fake_service.py): after a shutdown, `drctl recover` starts what it
//! stopped in dependency order waiting for health, records the RTO, refuses to start
//! anything on a no-go (a failing `validate`, a trigger still firing), holds the
//! dependants of a service that never gets healthy, and carries on after drd was
//! killed mid-recovery with `--resume`, without a second copy of anything.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drd_integration_tests::{audit_rows, backup_daemon, text, Daemon};

#[path = "support/services.rs"]
mod services;
use services::{report_service, shutdown, spec, wait_audited, Follow, Services, HANG};

/// Runs `drctl recover ARGS --json` and returns its exit code and report.
fn recover(daemon: &Daemon, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    services::json_command(daemon, "recover", args)
}

/// front -> mid -> back, where a copy of mid started by the recovery is held before
/// it writes its pidfile until the test lets it go.
fn chain_with_a_held_start() -> Services {
    let mut mid = spec("mid", &["back"], 0.0);
    mid.start_gate = true;
    Services::start(vec![
        spec("front", &["mid"], 0.0),
        mid,
        spec("back", &[], 0.0),
    ])
}

/// How long mid's `undrain` hook takes: the recovery goes on that long after the last
/// service is healthy, where its RTO has ended.
const UNDRAIN_MS: i64 = 300;

fn chain(undrained: &std::path::Path) -> Services {
    let mut mid = spec("mid", &["back"], 0.0);
    mid.extra = format!(
        "health = {{ run = [\"/bin/true\"], timeout = \"5s\" }}\n\
         undrain = [{{ run = [\"/bin/sh\", \"-c\", \"sleep {} && touch '{}'\"] }}]\n",
        format_args!("{}.{:03}", UNDRAIN_MS / 1000, UNDRAIN_MS % 1000),
        undrained.display()
    );
    Services::start(vec![
        spec("front", &["mid"], 0.0),
        mid,
        spec("back", &[], 0.0),
    ])
}

fn check<'a>(report: &'a serde_json::Value, subject: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == subject)
        .unwrap_or_else(|| panic!("no check {subject} in {report:#}"))
}

#[test]
fn a_recovery_starts_what_the_shutdown_stopped_in_order_and_records_the_rto() {
    let dir = drd_integration_tests::open_tempdir();
    let undrained = dir.path().join("undrained");
    let mut services = chain(&undrained);
    let daemon = Daemon::start(&services.config());
    let (code, stopped) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0), "{stopped:#}");
    for name in ["front", "mid", "back"] {
        assert!(!services.running(name), "{name} still runs");
    }

    // The plan: back first, front last; the go.
    let (code, plan) = recover(&daemon, &["--dry-run"]);
    assert_eq!(code, Some(0), "{plan:#}");
    assert_eq!(plan["recovers"], 1, "{plan:#}");
    let order: Vec<&str> = plan["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|level| level[0]["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["back", "mid", "front"], "{plan:#}");
    assert_eq!(check(&plan, "trigger")["ok"], true, "{plan:#}");
    assert!(!services.running("back"), "a dry run started something");

    let (code, report) = recover(&daemon, &["--yes"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["outcome"], "recovered", "{report:#}");
    assert_eq!(report["recovers"], 1, "{report:#}");
    for name in ["front", "mid", "back"] {
        assert_eq!(
            report_service(&report, name)["state"],
            "started",
            "{report:#}"
        );
        assert!(services.running(name), "{name} is not running");
    }
    // Dependency order: each started after what it needs.
    let back = services.restarted_at("back");
    let mid = services.restarted_at("mid");
    let front = services.restarted_at("front");
    assert!(back < mid && mid < front, "{back} {mid} {front}");
    // The RTO runs from the shutdown's start until every service was back, its
    // undrain hook done (UNDRAIN_MS after the services were healthy): it ends after
    // that hook and no later than the recovery, and is kept with the run.
    let rto = report["rto_ms"].as_u64().unwrap();
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    let run = |id: i64| -> (String, Option<i64>, i64, Option<i64>, Option<i64>) {
        conn.query_row(
            "SELECT kind, recovers, started_ms, ended_ms, rto_ms FROM shutdown_runs \
             WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
    };
    let (kind, recovers, _, recovery_ended, kept) = run(report["run_id"].as_i64().unwrap());
    assert_eq!((kind.as_str(), recovers), ("recovery", Some(1)));
    assert_eq!(kept.and_then(|ms| u64::try_from(ms).ok()), Some(rto));
    let (_, _, shutdown_started, _, _) = run(1);
    let back_at = shutdown_started + i64::try_from(rto).unwrap();
    let undrained_at = std::fs::metadata(&undrained)
        .expect("mid's undrain hook did not run")
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let undrained_at = i64::try_from(undrained_at.as_millis()).unwrap();
    assert!(
        undrained_at <= back_at,
        "the RTO ({rto} ms) ended at {back_at}, before the undrain hook at \
         {undrained_at}: {report:#}"
    );
    assert!(
        back_at <= recovery_ended.unwrap(),
        "the RTO ended at {back_at}, after the recovery ({recovery_ended:?})"
    );
    // The history lists the recovery, newest first, with the shutdown it brought
    // back and its RTO.
    let out = daemon.drctl(&["shutdowns", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["kind"], "recovery", "{runs:#}");
    assert_eq!(runs[0]["state"], "recovered", "{runs:#}");
    assert_eq!(runs[0]["recovers"], 1, "{runs:#}");
    assert_eq!(runs[0]["rto_ms"].as_u64(), Some(rto), "{runs:#}");
    let rows = audit_rows(&daemon.catalog());
    let done = rows
        .iter()
        .find(|r| r.1 == "recovery #2 done")
        .unwrap_or_else(|| panic!("{rows:#?}"));
    assert!(done.3.contains("RTO"), "{done:?}");

    // The table for people says the same.
    let out = daemon.drctl(&["recover", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("running already; left alone"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_failing_validate_is_a_no_go_and_nothing_starts() {
    let mut api = spec("api", &["db"], 0.0);
    api.extra =
        "validate = { run = [\"/bin/sh\", \"-c\", \"echo orders table missing >&2; exit 3\"] }\n"
            .to_owned();
    let mut services = Services::start(vec![api, spec("db", &[], 0.0)]);
    let daemon = Daemon::start(&services.config());
    let (code, _) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0));

    let (code, plan) = recover(&daemon, &["--dry-run"]);
    assert_eq!(code, Some(1), "a dry run says no-go: {plan:#}");
    let (code, report) = recover(&daemon, &["--yes"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "no-go", "{report:#}");
    let validate = check(&report, "api validate");
    assert_eq!(validate["ok"], false, "{report:#}");
    assert!(
        validate["detail"]
            .as_str()
            .unwrap()
            .contains("orders table missing"),
        "{report:#}"
    );
    assert!(!services.running("db") && !services.running("api"));
    assert_eq!(services.count("db", "start"), 1, "db was started again");
}

#[test]
fn a_service_that_never_gets_healthy_holds_its_dependants_and_the_rest_goes_on() {
    let mut mid = spec("mid", &["back"], 0.0);
    mid.extra = "health = { run = [\"/bin/false\"], timeout = \"1s\" }\n".to_owned();
    let mut services = Services::start(vec![
        spec("front", &["mid"], 0.0),
        mid,
        spec("back", &[], 0.0),
        spec("other", &[], 0.0),
    ]);
    let daemon = Daemon::start(&services.config());
    let (code, _) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0));
    let (code, report) = recover(&daemon, &["--yes"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "incomplete", "{report:#}");
    assert!(report["rto_ms"].is_null(), "no RTO unless all came back");
    let front = report_service(&report, "front");
    assert_eq!(front["state"], "NOT STARTED", "{report:#}");
    assert!(
        front["detail"]
            .as_str()
            .unwrap()
            .contains("mid, which it depends on, did not start"),
        "{report:#}"
    );
    assert!(services.running("back") && services.running("other") && services.running("mid"));
    assert!(!services.running("front"));
}

#[test]
fn a_shutdown_a_monitor_started_is_not_recovered_while_the_monitor_still_fires() {
    let mut services = Services::start(vec![spec("api", &[], 0.0)]);
    let daemon = Daemon::start(&format!(
        "{}{}",
        services.config(),
        r#"
[policy]
automatic_shutdown = true

[monitors.resources]
interval = "1s"
load = { fire = 0.0, clear = -1.0, on_fire = [{ shutdown = "resource_exhaustion" }] }
"#
    ));
    daemon.wait_until("the monitor's shutdown to end", HANG, || {
        audit_rows(&daemon.catalog())
            .iter()
            .any(|r| r.1 == "shutdown #1 done")
    });
    assert!(!services.running("api"));
    let (code, report) = recover(&daemon, &["--yes"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "no-go", "{report:#}");
    let trigger = check(&report, "trigger");
    assert!(
        trigger["detail"].as_str().unwrap().starts_with(
            "resources/load, which started shutdown #1 (resource_exhaustion), is still not well"
        ),
        "{report:#}"
    );
    assert!(!services.running("api"));
}

/// drd is killed while the recovery's start of mid is under way (held before it
/// writes its pidfile); `drctl status` shows the recovery interrupted, a new
/// shutdown is refused, and `--resume` waits for the start under way instead of
/// starting a second copy, then starts what depends on it.
#[test]
fn drd_killed_mid_recovery_then_resume_carries_on_without_a_second_copy() {
    let mut services = chain_with_a_held_start();
    let mut daemon = Daemon::start(&services.config());
    let (code, _) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0));
    let recovering = daemon.spawn_drctl(&["recover", "--yes", "--json"]);
    let starting = services.starting("mid");
    daemon.kill();
    daemon.spawn(&[]);
    daemon.wait_ready();
    let out = recovering.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));

    let status = daemon.drctl(&["status"]);
    assert!(
        text(&status).contains("recovery #2") && text(&status).contains("drctl recover --resume"),
        "{}",
        text(&status)
    );
    let out = daemon.drctl(&["shutdown", "--trigger", "manual", "--yes"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(text(&out).contains("recovery #2"), "{}", text(&out));

    let resume = Follow::start(
        &daemon,
        drd_proto::Request::Recover {
            dry_run: false,
            only: Vec::new(),
            from_shutdown: None,
            resume: true,
            restore_data: false,
            at: None,
        },
    );
    let step = [
        "mid",
        "starting",
        "its start began before drd was restarted",
    ];
    let report = resume.release_at(step, starting);
    assert_eq!(report["outcome"], "recovered", "{report:#}");
    assert_eq!(services.copies("mid").len(), 1, "a second mid was started");
    assert!(services.running("front") && services.running("back"));
    wait_audited(&daemon, "resume recovery");
}

/// `drctl abort` stops a recovery at its next safe point (after the level under
/// way): what it started keeps running, the rest stays down, and both the abort and
/// the recovery's own client say so.
#[test]
fn abort_stops_a_recovery_between_levels_and_leaves_what_it_started_running() {
    let mut services = chain_with_a_held_start();
    let daemon = Daemon::start(&services.config());
    let (code, _) = shutdown(&daemon, &["--trigger", "manual", "--yes"]);
    assert_eq!(code, Some(0));
    let recovering = daemon.spawn_drctl(&["recover", "--yes", "--json"]);
    let starting = services.starting("mid");
    let abort = daemon.spawn_drctl(&["abort", "--json"]);
    wait_audited(&daemon, "abort recovery");
    starting.release(b"");
    let (code, aborted) = services::json_of(abort);
    assert_eq!(code, Some(0), "{aborted:#}");
    assert_eq!(aborted["outcome"], "aborted", "{aborted:#}");
    let (code, report) = services::json_of(recovering);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "aborted", "{report:#}");
    assert!(services.running("back") && services.running("mid"));
    assert!(!services.running("front"));
    let rows = audit_rows(&daemon.catalog());
    assert!(
        rows.iter()
            .any(|r| r.1 == "abort recovery" && r.3.contains("what it started keeps running")),
        "{rows:#?}"
    );
}

/// A database damaged after the shutdown is a no-go (SQLite's `integrity_check`
/// names it); `--restore-data` puts back the snapshot the shutdown's preserve job
/// took, it passes the check, the rows are the ones from before, and the service
/// starts on it.
#[test]
fn a_damaged_database_is_a_no_go_and_restore_data_brings_back_the_shutdowns_snapshot() {
    let dir = drd_integration_tests::open_tempdir();
    let db_file = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&db_file).unwrap();
        conn.execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO orders (item) SELECT printf('order %05d', i) FROM n;",
        )
        .unwrap();
    }
    let mut db = spec("db", &[], 0.0);
    db.extra = "preserve = [\"dbjob\"]\n".to_owned();
    let mut services = Services::start(vec![spec("api", &["db"], 0.0), db]);
    let daemon = backup_daemon(&format!(
        "[jobs.dbjob]\ntiers = [\"local\"]\nsources = [{{ kind = \"sqlite\", path = \"{}\" }}]\n{}",
        db_file.display(),
        services.config()
    ));
    let (code, report) = shutdown(&daemon, &["--trigger", "data_corruption", "--yes"]);
    assert_eq!(code, Some(0), "{report:#}");

    // Damage the middle of the file, as a bad disk or a stray writer would.
    let mut bytes = std::fs::read(&db_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8192].fill(0xA5);
    std::fs::write(&db_file, &bytes).unwrap();

    let (code, report) = recover(&daemon, &["--yes"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["outcome"], "no-go", "{report:#}");
    let integrity = check(&report, &format!("db integrity {}", db_file.display()));
    assert_eq!(integrity["ok"], false, "{report:#}");
    assert!(!services.running("db") && !services.running("api"));

    let (code, plan) = recover(&daemon, &["--dry-run", "--restore-data"]);
    assert_eq!(code, Some(0), "{plan:#}");
    assert!(
        plan["restore"][0]
            .as_str()
            .unwrap()
            .starts_with("dbjob: snapshot "),
        "{plan:#}"
    );
    let (code, report) = recover(&daemon, &["--restore-data", "--yes"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["outcome"], "recovered", "{report:#}");
    assert!(
        report["restored"][0]
            .as_str()
            .unwrap()
            .contains(&db_file.display().to_string()),
        "{report:#}"
    );
    let conn = rusqlite::Connection::open(&db_file).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let (count, last): (i64, String) = conn
        .query_row("SELECT count(*), max(item) FROM orders", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((count, last.as_str()), (3000, "order 03000"));
    assert!(services.running("db") && services.running("api"));
}
