//! The restore drills against a real daemon: backup_validation, database_recovery and
//! storage_failure pass on sound backups with measured RTO and RPO and leave the
//! sandbox empty; a damaged pack, a database backed up damaged, and an offsite tier
//! missing the newest snapshot each fail the drill, saying why.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use drd_integration_tests::{
    backup_daemon_with, eventually, flip_middle_byte, packs, random_bytes, Daemon,
};

/// One job `app` on `local` and `offsite`: a folder, a SQLite database and a command
/// source whose drill_check reads the restored dump on stdin; drills held to targets
/// no test run misses, reading every pack.
const JOB: &str = "[tiers.offsite]\nkind = \"dir\"\npath = \"{dir}/offsite/repo\"\n\
    [jobs.app]\ntiers = [\"local\", \"offsite\"]\n\
    sources = [\n\
      { kind = \"path\", path = \"{dir}/data\" },\n\
      { kind = \"sqlite\", path = \"{dir}/app.db\" },\n\
      { kind = \"command\", name = \"dump\", run = [\"cat\", \"{dir}/dump.txt\"], \
        drill_check = [\"grep\", \"-q\", \"dump complete\"] },\n\
    ]\n\
    [drills]\nenabled = false\nverify_percent = 100.0\n\
    [drills.targets.storage]\nrto = \"10m\"\nrpo = \"1d\"\n\
    [drills.targets.database]\nrto = \"10m\"\nrpo = \"1d\"\n";

fn start() -> Daemon {
    let daemon = backup_daemon_with("replication_retry_max = \"1s\"", JOB);
    let dir = daemon.dir.path();
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    for i in 0..8u64 {
        std::fs::write(data.join(format!("sub/f{i}")), random_bytes(i, 300_000)).unwrap();
    }
    std::fs::write(dir.join("dump.txt"), "-- dump complete\n").unwrap();
    let db = rusqlite::Connection::open(dir.join("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t (a INTEGER, b TEXT); CREATE INDEX i ON t (a);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500)
         INSERT INTO t SELECT x, 'row ' || x FROM n;",
    )
    .unwrap();
    daemon
}

/// Backs up `app` and waits until the offsite tier has the snapshot.
fn backup(daemon: &Daemon) -> String {
    let id = daemon.backup_now("app");
    eventually("the snapshot to reach the offsite tier", || {
        daemon
            .snapshot_ids("offsite")
            .is_ok_and(|ids| ids.contains(&id))
    });
    id
}

/// Runs `drctl --json test run --scenario SCENARIO`; returns the run and whether
/// drctl exited 0.
fn drill(daemon: &Daemon, scenario: &str) -> (serde_json::Value, bool) {
    let out = daemon.drctl(&["--json", "test", "run", "--scenario", scenario]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "drctl test run --scenario {scenario}: {e}: {}",
            drd_integration_tests::text(&out)
        )
    });
    (report, out.status.success())
}

/// The result for `subject`; panics listing the subjects when there is none.
fn result<'a>(report: &'a serde_json::Value, subject: &str) -> &'a serde_json::Value {
    let results = report["results"].as_array().unwrap();
    results
        .iter()
        .find(|r| r["subject"] == subject)
        .unwrap_or_else(|| panic!("no drill of {subject:?} in {report:#}"))
}

/// Asserts that the drill of `subject` passed with a measured RTO and RPO.
fn passed_measured(report: &serde_json::Value, subject: &str) {
    let found = result(report, subject);
    assert_eq!(found["outcome"], "pass", "{found:#}");
    assert!(found["rto_ms"].as_u64().is_some(), "{found:#}");
    assert!(found["rpo_ms"].as_u64().is_some(), "{found:#}");
}

fn sandbox_is_empty(daemon: &Daemon) {
    let sandbox = daemon.dir.path().join("state/drills");
    assert!(sandbox.is_dir(), "no sandbox at {}", sandbox.display());
    let left: Vec<_> = std::fs::read_dir(&sandbox).unwrap().collect();
    assert!(left.is_empty(), "the drills left {left:?} in the sandbox");
}

fn short(id: &str) -> &str {
    &id[..8]
}

#[test]
fn restore_drills_pass_on_sound_backups_and_fail_on_a_lagging_tier_or_damaged_pack() {
    let daemon = start();
    let first = backup(&daemon);
    let db = daemon.dir.path().join("app.db").display().to_string();

    let (report, ok) = drill(&daemon, "backup_validation");
    assert!(ok, "{report:#}");
    passed_measured(&report, "job app");
    for tier in ["tier local", "tier offsite"] {
        let found = result(&report, tier);
        assert_eq!(found["outcome"], "pass", "{found:#}");
    }
    let evidence = result(&report, "job app")["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("checked against the snapshot"),
        "{evidence}"
    );

    let (report, ok) = drill(&daemon, "database_recovery");
    assert!(ok, "{report:#}");
    passed_measured(&report, &format!("job app {db}"));
    passed_measured(&report, "job app commands/dump");
    let evidence = result(&report, &format!("job app {db}"))["evidence"].to_string();
    assert!(evidence.contains("integrity_check: ok"), "{evidence}");

    let (report, ok) = drill(&daemon, "storage_failure");
    assert!(ok, "{report:#}");
    passed_measured(&report, "job app from tier offsite");
    sandbox_is_empty(&daemon);

    // A second snapshot: the first is now one to restore at random, and once the
    // offsite tier loses the newest one, recovering from it alone would lose data.
    let second = backup(&daemon);
    let (report, ok) = drill(&daemon, "backup_validation");
    assert!(ok, "{report:#}");
    let random = result(&report, &format!("job app random {}", short(&first)));
    assert_eq!(random["outcome"], "pass", "{random:#}");
    let lost = daemon
        .dir
        .path()
        .join("offsite/repo/snapshots")
        .join(&second);
    std::fs::remove_file(&lost).unwrap();
    let (report, ok) = drill(&daemon, "storage_failure");
    assert!(!ok, "{report:#}");
    let found = result(&report, "job app from tier offsite");
    assert_eq!(found["outcome"], "fail", "{found:#}");
    let evidence = found["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!("lacks the newest snapshot {}", short(&second))),
        "{evidence}"
    );
    assert!(
        evidence.contains(&format!("its newest is {}", short(&first))),
        "{evidence}"
    );
    sandbox_is_empty(&daemon);

    // A damaged pack on the landing tier: a copy may stand in for it in a restore,
    // but the tier's own read-verify finds it and names the pack.
    let pack = packs(&daemon.repo()).into_iter().next().unwrap();
    flip_middle_byte(&pack, 0x40);
    let (report, ok) = drill(&daemon, "backup_validation");
    assert!(!ok, "{report:#}");
    let found = result(&report, "tier local");
    assert_eq!(found["outcome"], "fail", "{found:#}");
    let evidence = found["evidence"].as_str().unwrap();
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(evidence.contains(name), "{evidence}");
    assert_eq!(result(&report, "tier offsite")["outcome"], "pass");
    sandbox_is_empty(&daemon);
}

/// Makes `path`'s index `i` describe another column than the one it was built from:
/// every page stays well formed, so SQLite's quick_check (which the backup runs on its
/// copy) passes, but the index no longer matches its table, which only
/// `integrity_check` sees.
fn damage_index(path: &Path) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "PRAGMA writable_schema = ON;
         UPDATE sqlite_master SET sql = 'CREATE INDEX i ON t (b)' WHERE name = 'i';",
    )
    .unwrap();
    drop(db);
    let db = rusqlite::Connection::open(path).unwrap();
    let quick: String = db
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        quick, "ok",
        "the damage must pass quick_check to be backed up"
    );
}

#[test]
fn a_database_backed_up_damaged_fails_its_drill_with_what_sqlite_found() {
    let daemon = start();
    let db = daemon.dir.path().join("app.db");
    damage_index(&db);
    backup(&daemon);

    let (report, ok) = drill(&daemon, "database_recovery");
    assert!(!ok, "{report:#}");
    let found = result(&report, &format!("job app {}", db.display()));
    assert_eq!(found["outcome"], "fail", "{found:#}");
    assert!(found["rto_ms"].is_null(), "no recovery, no RTO: {found:#}");
    let evidence = found["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!("holds {} damaged", db.display())),
        "{evidence}"
    );
    assert!(evidence.contains("missing from index i"), "{evidence}");
    // The command source's dump is still sound.
    assert_eq!(result(&report, "job app commands/dump")["outcome"], "pass");
    sandbox_is_empty(&daemon);
}
