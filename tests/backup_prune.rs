//! A backup and a prune on the same tier at once: a prune started during a backup is
//! answered busy and names the run that holds the tier; a backup that meets a prune's
//! exclusive lock waits for it, says so, and is recorded as ok once it goes through.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use drd_integration_tests::gate::{finish, slow_job, Gate};
use drd_integration_tests::{backup_daemon, eventually, text, FILES_JOB};

#[test]
fn a_prune_during_a_backup_is_answered_busy_naming_the_job() {
    let daemon = backup_daemon(&slow_job("slow", "dump.fifo"));
    let gate = Gate::new(&daemon.dir.path().join("dump.fifo"));
    let backup = daemon.spawn_drctl(&["backup", "--job", "slow", "--json"]);
    let held = gate.wait_reader();
    let out = daemon.drctl(&["prune"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the run of job slow (tier local) holds the repository"),
        "{stderr}"
    );

    held.release(b"dump contents\n");
    let out = finish(backup, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out));
    // The tier is free again: the same prune now runs.
    let out = daemon.drctl(&["prune"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_backup_that_meets_a_prune_waits_for_it_and_is_recorded_ok() {
    let daemon = backup_daemon(FILES_JOB);
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "one\n").unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);

    // A prune in another process (a second drd, `drd prune` offline, another host)
    // holds the tier: its exclusive lock, alive (this test's pid) and fresh.
    let lock = daemon.repo().join("locks/prune-elsewhere");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let info = serde_json::json!({
        "host": host.trim(),
        "pid": std::process::id(),
        "exclusive": true,
        "started_ms": now,
        "heartbeat_ms": now,
        "lease_ms": 600_000,
    });
    std::fs::write(&lock, info.to_string()).unwrap();

    std::fs::write(data.join("b.txt"), "two\n").unwrap();
    let mut backup = daemon.spawn_drctl(&["backup", "--job", "files", "--json"]);
    eventually("the backup says it waits for the lock", || {
        daemon
            .log()
            .contains("backup waits for the repository lock")
    });
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("backup waits for the repository lock"))
        .unwrap();
    assert!(
        line.contains(&format!("pid {} (exclusive)", std::process::id())),
        "{line}"
    );
    assert!(
        backup.try_wait().unwrap().is_none(),
        "the backup ended while the prune held the tier"
    );

    std::fs::remove_file(&lock).unwrap();
    let out = finish(backup, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files_new"], 1, "{report}");

    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    let (outcome, snapshot): (String, Option<String>) = conn
        .query_row(
            "SELECT outcome, snapshot FROM runs WHERE job = 'files' ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(outcome, "ok");
    assert_eq!(
        snapshot.as_deref(),
        report["snapshot"]["id"].as_str(),
        "{report}"
    );
}
