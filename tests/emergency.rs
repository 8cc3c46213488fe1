//! `drctl backup emergency` through the real daemon: every critical job, in priority
//! order, one failing without stopping the others, a final table, exit 1 on any
//! failure, and the audit log holding the emergency and each run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use drd_integration_tests::gate::{finish, Gate};
use drd_integration_tests::{audit_rows, backup_daemon, text, RawConn};
use drd_proto::{Event, Reply, Request, Response, ServerFrame};

const JOBS: &str = "
[jobs.a-config]
tiers = [\"local\"]
critical = true
priority = 30
sources = [{ kind = \"path\", path = \"{dir}/data/config\" }]

[jobs.db]
tiers = [\"local\"]
critical = true
priority = 10
sources = [{ kind = \"path\", path = \"{dir}/data/db\" }]

[jobs.broken]
tiers = [\"local\"]
critical = true
priority = 20
sources = [{ kind = \"command\", name = \"dump\", run = [\"sh\", \"-c\", \"echo disk on fire >&2; exit 3\"] }]

[jobs.logs]
tiers = [\"local\"]
sources = [{ kind = \"path\", path = \"{dir}/data/logs\" }]
";

#[test]
fn emergency_backup_runs_critical_jobs_in_priority_order_and_reports_each() {
    let daemon = backup_daemon(JOBS);
    for dir in ["config", "db", "logs"] {
        let d = daemon.dir.path().join("data").join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("f"), dir).unwrap();
    }

    let out = daemon.drctl(&["backup", "emergency"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    let order: Vec<&str> = shown
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(order, vec!["db", "broken", "a-config"], "{shown}");
    let row = |job: &str| {
        shown
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{job} ")))
            .unwrap_or_else(|| panic!("no row for {job}: {shown}"))
            .to_owned()
    };
    assert!(row("db").trim_end().ends_with("ok"), "{shown}");
    assert!(row("broken").trim_end().ends_with("failed"), "{shown}");
    assert!(
        shown.contains("broken: ") && shown.contains("disk on fire"),
        "the failure says why: {shown}"
    );
    assert!(
        shown.contains("emergency backup: 2 of 3 critical jobs backed up"),
        "{shown}"
    );

    // Each run is recorded with the emergency trigger, in the order run; the
    // non-critical job did not run.
    let runs: Vec<(String, String, String)> = catalog_runs(
        &daemon,
        "SELECT job, trigger, outcome FROM runs ORDER BY id",
    );
    let expected = [("db", "ok"), ("broken", "failed"), ("a-config", "ok")];
    assert_eq!(runs.len(), 3, "{runs:?}");
    for ((job, trigger, outcome), (want_job, want)) in runs.iter().zip(expected) {
        assert_eq!(
            (job.as_str(), trigger.as_str(), outcome.as_str()),
            (want_job, "emergency", want)
        );
    }
    let rows = audit_rows(&daemon.catalog());
    assert!(
        rows.iter().any(|r| r.1 == "emergency backup"
            && r.2 == "failed"
            && r.3.contains("db ok, broken failed, a-config ok")),
        "{rows:?}"
    );
    for job in ["db", "a-config"] {
        assert!(
            rows.iter().any(|r| r.1 == format!("backup {job}")
                && r.2 == "ok"
                && r.3.starts_with("emergency run")),
            "{rows:?}"
        );
    }

    // Fixed: every critical job backs up, exit 0, and --json has each snapshot.
    daemon.edit_config("echo disk on fire >&2; exit 3", "echo dump");
    let report = daemon.drctl_json(&["backup", "emergency"]);
    let runs = report["runs"].as_array().unwrap();
    let jobs: Vec<&str> = runs.iter().map(|r| r["job"].as_str().unwrap()).collect();
    assert_eq!(jobs, vec!["db", "broken", "a-config"]);
    for run in runs {
        assert_eq!(run["outcome"], "ok", "{report:#}");
        assert_eq!(run["snapshot"].as_str().unwrap().len(), 64);
    }
    let snapshots = daemon.drctl_json(&["backups", "--job", "broken"]);
    assert_eq!(snapshots[0]["id"], runs[1]["snapshot"]);
}

#[test]
fn emergency_backup_without_critical_jobs_says_so() {
    let daemon = backup_daemon(
        "[jobs.logs]\ntiers = [\"local\"]\nsources = [{ kind = \"path\", path = \"{dir}\" }]\n",
    );
    let out = daemon.drctl(&["backup", "emergency"]);
    assert_eq!(out.status.code(), Some(66), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no job is marked critical = true"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_emergency_waits_for_a_running_backup_of_a_job_and_then_runs_it_again() {
    // Each run of the job blocks in its dump until the test opens the gate.
    let daemon = backup_daemon(
        "[jobs.slow]\ntiers = [\"local\"]\ncritical = true\n\
         sources = [{ kind = \"command\", name = \"dump\", run = [\"sh\", \"-c\", \"cat {dir}/gate; echo dump\"] }]\n",
    );
    let gate = Gate::new(&daemon.dir.path().join("gate"));
    let manual = daemon.spawn_drctl(&["backup", "--job", "slow"]);
    let held = gate.wait_reader();

    // The emergency, on a raw connection to see its events: it says it waits.
    let mut conn = RawConn::request(
        &daemon.socket(),
        Request::EmergencyBackup,
        Duration::from_secs(120),
    );
    let mut seen = Vec::new();
    loop {
        match conn.read_frame().unwrap() {
            Some(ServerFrame::Event(Event::Progress(p))) if p.task.ends_with("slow: waiting") => {
                break
            }
            Some(other) => seen.push(format!("{other:?}")),
            None => panic!("drd closed the connection; before that: {seen:#?}"),
        }
        assert!(
            !seen.iter().any(|f| f.starts_with("Response")),
            "the emergency answered without waiting: {seen:#?}"
        );
    }

    // The manual run finishes; then the emergency runs the job again.
    held.release(b"go\n");
    let out = finish(manual, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out));
    gate.wait_reader().release(b"go\n");
    let report = loop {
        match conn.read_frame().unwrap() {
            Some(ServerFrame::Response(Response::Ok(Reply::EmergencyBackedUp(report)))) => {
                break report
            }
            Some(ServerFrame::Event(_)) => {}
            other => panic!("not the emergency's report: {other:?}"),
        }
    };
    let run = &report.runs[0];
    assert_eq!(run.outcome.as_str(), "ok", "{report:#?}");

    // The emergency's run began after the manual run had ended.
    let runs: Vec<(String, i64, i64)> = catalog_runs(
        &daemon,
        "SELECT trigger, started_ms, ended_ms FROM runs ORDER BY id",
    );
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1].0, "emergency", "{runs:?}");
    assert!(runs[1].1 >= runs[0].2, "waited, then ran: {runs:?}");

    let snapshots = daemon.drctl_json(&["backups", "--job", "slow"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 2, "{snapshots:#}");
    assert_eq!(
        snapshots[1]["id"].as_str(),
        run.snapshot.as_deref(),
        "the emergency's snapshot is the newer"
    );
}

/// Three columns of each row of the catalog's `runs` table, as `sql` selects them.
fn catalog_runs<A, B, C>(daemon: &drd_integration_tests::Daemon, sql: &str) -> Vec<(A, B, C)>
where
    A: rusqlite::types::FromSql,
    B: rusqlite::types::FromSql,
    C: rusqlite::types::FromSql,
{
    let db = rusqlite::Connection::open(daemon.catalog()).unwrap();
    let mut stmt = db.prepare(sql).unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
