//! The drill machinery through the real daemon: `drctl test list` names what each
//! scenario would drill; a failing drill exits 1, says why, raises an alert, sets
//! `drd_drill_last_success` to 0 and is audited; the report shows only measured
//! figures; a drill is refused while a shutdown runs.
//!
//! The scenarios themselves are tested in drills_restore.rs (backup, database,
//! storage) and drills_services.rs (services, network, auth).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use drd_integration_tests::{audit_rows, backup_daemon_with, eventually, text, Daemon, FILES_JOB};

/// A daemon with the files job backed up once, metrics in a textfile every second.
fn daemon() -> Daemon {
    let daemon = backup_daemon_with(
        "",
        &format!("{FILES_JOB}[metrics]\ntextfile = \"{{dir}}/drd.prom\"\ninterval = \"1s\"\n"),
    );
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    std::fs::write(daemon.dir.path().join("data/a.txt"), "hello").unwrap();
    let out = daemon.drctl(&["backup", "--job", "files"]);
    assert!(out.status.success(), "{}", text(&out));
    daemon
}

#[test]
fn list_names_every_scenario_and_what_it_would_drill_here() {
    let daemon = daemon();
    let list = daemon.drctl_json(&["test", "list"]);
    let list = list.as_array().unwrap();
    let names: Vec<&str> = list
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "backup_validation",
            "database_recovery",
            "storage_failure",
            "service_recovery",
            "network_partition",
            "auth_outage",
            "rto_rpo"
        ]
    );
    let rto_rpo = &list[6];
    assert_eq!(rto_rpo["category"], "storage");
    assert_eq!(rto_rpo["subjects"], serde_json::json!(["job files"]));
    assert!(list.iter().all(|s| s["enabled"] == true));

    let out = daemon.drctl(&["test", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("service_recovery (service_mesh)"), "{shown}");
    assert!(shown.contains("drills: nothing configured"), "{shown}");

    let out = daemon.drctl(&["test", "run", "--scenario", "nope"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("backup_validation"), "{}", text(&out));
}

#[test]
fn a_failing_drill_exits_1_says_why_alerts_sets_the_metric_and_is_audited() {
    let daemon = daemon();
    // No restore drill has measured this job's RTO yet: rto_rpo measures the RPO and
    // fails on the RTO, saying how to get one.
    let out = daemon.drctl(&["test", "run", "--scenario", "rto_rpo", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["outcome"], "fail");
    let result = &run["results"][0];
    assert_eq!(result["subject"], "job files");
    assert_eq!(result["outcome"], "fail");
    assert!(result["rto_ms"].is_null(), "never computed: {result}");
    let rpo = result["rpo_ms"].as_u64().expect("the RPO is measured");
    assert!(rpo < 600_000, "the snapshot is minutes old at most: {rpo}");
    let evidence = result["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("tier local: newest snapshot"),
        "{evidence}"
    );
    assert!(
        evidence.contains("--scenario backup_validation"),
        "{evidence}"
    );

    let out = daemon.drctl(&["test", "run", "--scenario", "rto_rpo"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("FAIL"), "{shown}");
    assert!(shown.contains("RPO / TARGET"), "{shown}");

    let alerts = daemon.drctl(&["alerts", "--json"]);
    let alerts: serde_json::Value = serde_json::from_slice(&alerts.stdout).unwrap();
    let alert = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"] == "drills/rto_rpo job files")
        .unwrap_or_else(|| panic!("no drill alert in {alerts}"));
    assert!(alert["summary"]
        .as_str()
        .unwrap()
        .contains("recovery drill failed"));

    let prom = daemon.dir.path().join("drd.prom");
    eventually("the drill metric", || {
        std::fs::read_to_string(&prom)
            .unwrap_or_default()
            .contains("drd_drill_last_success{category=\"storage\"} 0")
    });

    let rows = audit_rows(&daemon.catalog());
    let audited = rows
        .iter()
        .find(|(_, action, outcome, _)| action == "drill run" && outcome == "failed")
        .unwrap_or_else(|| panic!("no drill run in the audit log: {rows:?}"));
    assert!(audited.3.contains("FAIL rto_rpo job files"), "{audited:?}");

    // The report has the measured RPO, and no RTO, since none was measured.
    let report = daemon.drctl_json(&["test", "report", "--since", "1h"]);
    let storage = report["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "storage")
        .unwrap();
    assert_eq!(storage["drills"], 2);
    assert_eq!(storage["passed"], 0);
    assert!(storage["last_rpo_ms"].as_u64().is_some(), "{storage}");
    assert!(storage["last_rto_ms"].is_null(), "{storage}");
    let database = report["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "database")
        .unwrap();
    assert_eq!(
        database["drills"], 0,
        "nothing measured is shown as nothing"
    );
    assert_eq!(
        database["target_rto_ms"], 120_000,
        "the seeds' table by default"
    );

    let out = daemon.drctl(&["test", "report", "--markdown"]);
    assert!(out.status.success(), "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.starts_with("# Disaster recovery report: "), "{md}");
    assert!(
        md.contains("| storage | 3m 0s | - | - | - | 60.0 s |"),
        "{md}"
    );
    assert!(md.contains("| 0/2 |"), "{md}");
    assert!(md.contains("- rto_rpo job files (storage): "), "{md}");

    // A restore drill measures the job's RTO; rto_rpo then passes and its alert resolves.
    let generous = std::fs::read_to_string(&daemon.config).unwrap()
        + "[drills.targets.storage]\nrpo = \"1h\"\n";
    std::fs::write(&daemon.config, generous).unwrap();
    let out = daemon.drctl(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = daemon.drctl(&["test", "run", "--scenario", "backup_validation"]);
    assert!(out.status.success(), "{}", text(&out));
    let run = daemon.drctl_json(&["test", "run", "--scenario", "rto_rpo"]);
    let result = &run["results"][0];
    assert_eq!(result["outcome"], "pass", "{run:#}");
    assert!(result["rto_ms"].as_u64().is_some(), "{run:#}");
    let alerts = daemon.drctl(&["alerts", "--all", "--json"]);
    let alerts: serde_json::Value = serde_json::from_slice(&alerts.stdout).unwrap();
    let alert = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"] == "drills/rto_rpo job files")
        .unwrap();
    assert!(alert["resolved_unix_ms"].is_i64(), "{alert:#}");
    let md = daemon.drctl(&["test", "report", "--markdown"]);
    let md = String::from_utf8_lossy(&md.stdout);
    let row = md
        .lines()
        .find(|l| l.starts_with("| storage |"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(row.contains(" s |"), "a measured RTO: {row}");
    assert!(!row.contains("| 0/"), "passes are counted: {row}");
}

#[test]
fn a_drill_is_refused_while_a_shutdown_holds_the_host() {
    let daemon = backup_daemon_with(
        "",
        "[services.sleeper]\ndriver = \"process\"\npidfile = \"{dir}/sleeper.pid\"\n\
         drain = [{ run = [\"sleep\", \"3\"], timeout = \"30s\" }]\n",
    );
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pidfile = daemon.dir.path().join("sleeper.pid");
    std::fs::write(&pidfile, sleeper.id().to_string()).unwrap();
    let mut shutdown = std::process::Command::new(&drd_integration_tests::bins().drctl)
        .args(["--socket", daemon.socket().to_str().unwrap()])
        .args(["shutdown", "--yes", "--trigger", "manual"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the shutdown to start", || {
        let status = daemon.drctl(&["status", "--json"]);
        String::from_utf8_lossy(&status.stdout).contains("\"running\"")
    });
    let out = daemon.drctl(&["test", "run", "--scenario", "rto_rpo"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        text(&out).contains("shutdown #1 is running"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("drills do not run while"),
        "{}",
        text(&out)
    );
    assert!(shutdown.wait().unwrap().success());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let rows = audit_rows(&daemon.catalog());
    assert!(
        rows.iter()
            .any(|(_, action, outcome, _)| action == "drill run" && outcome == "refused"),
        "{rows:?}"
    );
}
