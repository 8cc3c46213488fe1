//! A damaged snapshot file never disappears silently (issue 9, item 3): every listing
//! (`drctl backups`, `drd snapshots`, prune's decisions) shows it as DAMAGED with its
//! file and why, `latest` and `--at` refuse to fall back to an older snapshot unless
//! `--allow-older` says so, restoring it by id says it is damaged (or reads an intact
//! offsite copy), and prune leaves it in place, keeps the data it may need, and goes on
//! with the rest.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use drd_integration_tests::{
    backup_daemon, backup_daemon_with, eventually, flip_middle_byte, os, random_bytes, text,
    Daemon, FILES_JOB, OFFSITE_FILES_JOB,
};

/// Flips one byte in the middle of `file`; returns the intact bytes.
fn damage(file: &Path) -> Vec<u8> {
    flip_middle_byte(file, 0x5a)
}

/// Backs up `data/app.conf` holding `content`; returns the snapshot id.
fn backup(daemon: &Daemon, content: &str) -> String {
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("app.conf"), content).unwrap();
    daemon.backup_now("files")
}

/// Snapshot A ("version 1"), then B ("version 2"), then B's file damaged.
fn older_good_newer_damaged(daemon: &Daemon) -> (String, String) {
    let a = backup(daemon, "version 1");
    let b = backup(daemon, "version 2");
    damage(&daemon.repo().join("snapshots").join(&b));
    (a, b)
}

/// What `app.conf` holds below a restore target.
fn restored_conf(daemon: &Daemon, target: &Path) -> String {
    let data = daemon.dir.path().join("data");
    std::fs::read_to_string(
        target
            .join(data.strip_prefix("/").unwrap())
            .join("app.conf"),
    )
    .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `listed` (a `backups` / `snapshots` JSON array) shows `good` as readable and
/// `bad` as damaged, naming its file and why.
fn assert_listed(listed: &serde_json::Value, good: &str, bad: &str) {
    let all = listed.as_array().unwrap();
    let find = |id: &str| all.iter().find(|s| s["id"] == id).cloned();
    let good = find(good).unwrap_or_else(|| panic!("{good} not listed: {listed:#}"));
    assert!(good["damaged"].is_null(), "{good:#}");
    let bad_entry = find(bad).unwrap_or_else(|| panic!("damaged {bad} not listed: {listed:#}"));
    assert!(
        bad_entry["damaged"]
            .as_str()
            .is_some_and(|why| why.contains("does not decrypt")),
        "{bad_entry:#}"
    );
    assert!(
        bad_entry["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(&format!("snapshots/{bad}"))),
        "{bad_entry:#}"
    );
}

#[test]
fn drctl_lists_a_damaged_snapshot_and_latest_will_not_fall_back_silently() {
    let daemon = backup_daemon(FILES_JOB);
    let (a, b) = older_good_newer_damaged(&daemon);

    assert_listed(&daemon.drctl_json(&["backups"]), &a, &b);
    // The catalog remembers which job the damaged snapshot was of.
    assert_listed(&daemon.drctl_json(&["backups", "--job", "files"]), &a, &b);
    assert_listed(&daemon.drctl_json(&["backups", "--tier", "local"]), &a, &b);
    let table = daemon.drctl(&["backups"]);
    assert!(table.status.success(), "{}", text(&table));
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(
        shown.contains("DAMAGED") && shown.contains(&b[..8]) && shown.contains("does not decrypt"),
        "{shown}"
    );

    let target = daemon.dir.path().join("t-latest");
    let t = target.to_str().unwrap();
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    for args in [
        vec!["restore", "--backup-id", "latest", "--target", t],
        vec![
            "restore",
            "--backup-id",
            "latest",
            "--job",
            "files",
            "--target",
            t,
        ],
        vec![
            "restore",
            "--backup-id",
            "latest",
            "--at",
            &now,
            "--target",
            t,
        ],
    ] {
        let out = daemon.drctl(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&b) && err.contains("damaged"),
            "names the damaged snapshot: {err}"
        );
        assert!(
            err.contains(&format!("--backup-id {a}")) && err.contains("--allow-older"),
            "says how to restore the older one: {err}"
        );
        assert!(!target.exists(), "nothing restored on a refusal");
    }

    let out = daemon.drctl(&["restore", "--backup-id", &b, "--target", t]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("damaged") && stderr(&out).contains(&format!("snapshots/{b}")),
        "{}",
        text(&out)
    );

    let older = daemon.drctl_json(&[
        "restore",
        "--backup-id",
        "latest",
        "--allow-older",
        "--target",
        t,
    ]);
    assert_eq!(older["snapshot"]["id"], a.as_str());
    assert!(
        older["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains(&b)),
        "the restore says what it passed over: {older:#}"
    );
    assert_eq!(restored_conf(&daemon, &target), "version 1");

    let by_id = daemon.dir.path().join("t-by-id");
    let out = daemon.drctl(&[
        "restore",
        "--backup-id",
        &a,
        "--target",
        by_id.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(restored_conf(&daemon, &by_id), "version 1");
}

#[test]
fn offline_drd_lists_a_damaged_snapshot_and_latest_will_not_fall_back_silently() {
    let daemon = backup_daemon(FILES_JOB);
    let (a, b) = older_good_newer_damaged(&daemon);
    let offline = |args: &[&str]| -> Output {
        let rest: Vec<_> = args[1..].iter().map(|a| os(a)).collect();
        daemon.offline(&args[..1], &rest)
    };

    let out = offline(&["snapshots", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_listed(&serde_json::from_slice(&out.stdout).unwrap(), &a, &b);
    let out = offline(&["snapshots"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("DAMAGED") && shown.contains(&b[..8]),
        "{shown}"
    );

    let target: PathBuf = daemon.dir.path().join("offline");
    let t = target.to_str().unwrap();
    let out = offline(&["restore", "--backup-id", "latest", "--target", t]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains(&b) && err.contains("damaged"), "{err}");
    assert!(
        err.contains(&format!("--backup-id {a}")) && err.contains("--allow-older"),
        "{err}"
    );
    assert!(!target.exists());

    let out = offline(&["restore", "--backup-id", &b[..12], "--target", t]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("damaged"), "{}", text(&out));

    let out = offline(&[
        "restore",
        "--backup-id",
        "latest",
        "--allow-older",
        "--json",
        "--target",
        t,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["snapshot"]["id"], a.as_str());
    assert!(report["warnings"].to_string().contains(&b), "{report:#}");
    assert_eq!(restored_conf(&daemon, &target), "version 1");
}

#[test]
fn a_damaged_snapshot_is_restored_from_an_intact_offsite_copy() {
    let daemon = backup_daemon_with("replication_retry_max = \"1s\"", OFFSITE_FILES_JOB);
    let _a = backup(&daemon, "version 1");
    let b = backup(&daemon, "version 2");
    eventually("snapshot B to reach the offsite tier", || {
        daemon.snapshot_ids("offsite").unwrap().contains(&b)
    });
    damage(&daemon.repo().join("snapshots").join(&b));

    let listed = daemon.drctl_json(&["backups"]);
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == b.as_str());
    assert!(
        entry.is_some_and(|e| e["damaged"].is_string()),
        "{listed:#}"
    );
    let offsite = daemon.drctl_json(&["backups", "--tier", "offsite"]);
    let entry = offsite
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == b.as_str());
    assert!(entry.is_some_and(|e| e["damaged"].is_null()), "{offsite:#}");

    for (name, selector) in [("by-id", b.as_str()), ("latest", "latest")] {
        let target = daemon.dir.path().join(name);
        let report = daemon.drctl_json(&[
            "restore",
            "--backup-id",
            selector,
            "--target",
            target.to_str().unwrap(),
        ]);
        assert_eq!(report["snapshot"]["id"], b.as_str());
        assert!(
            report["warnings"].to_string().contains("intact copy"),
            "says it used the offsite copy: {report:#}"
        );
        assert_eq!(restored_conf(&daemon, &target), "version 2");
    }
}

/// Backup `i` with a file of its own (so its data is garbage once it is forgotten).
fn backup_unique(daemon: &Daemon, i: u64) -> String {
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("cur.bin"), random_bytes(500 + 2 * i, 1 << 20)).unwrap();
    daemon.backup_now("files")
}

#[test]
fn prune_skips_a_damaged_snapshot_keeps_its_data_and_goes_on() {
    let daemon = backup_daemon(FILES_JOB);
    let ids: Vec<String> = (0..3).map(|i| backup_unique(&daemon, i)).collect();
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    daemon.set_retention("files", "retention = { keep_last = 1 }");
    let b_file = daemon.repo().join("snapshots").join(b);
    let intact = damage(&b_file);
    let damaged = std::fs::read(&b_file).unwrap();

    let out = daemon.drctl(&["prune"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!("snapshots/{b}")) && shown.contains("damaged"),
        "the prune output names the damaged file: {shown}"
    );
    assert!(daemon.log().contains(b.as_str()), "and so does the log");
    // Retention went on with the rest: A is forgotten, C kept, B left as it was.
    assert!(!daemon.repo().join("snapshots").join(a).exists());
    assert!(daemon.repo().join("snapshots").join(c).exists());
    assert_eq!(std::fs::read(&b_file).unwrap(), damaged, "evidence kept");

    // What B refers to is unknown while it is damaged, so its data must still be
    // there: with the intact file back, B restores whole.
    std::fs::write(&b_file, &intact).unwrap();
    let target = daemon.dir.path().join("b");
    let out = daemon.drctl(&[
        "restore",
        "--backup-id",
        b,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let data = target.join(daemon.dir.path().join("data").strip_prefix("/").unwrap());
    assert!(std::fs::read(data.join("cur.bin")).unwrap() == random_bytes(502, 1 << 20));

    // With the damage gone, garbage collection catches up.
    let report = daemon.drctl_json(&["prune"]);
    let freed = report["tiers"][0]["gc"]["bytes_freed"].as_u64().unwrap();
    assert!(freed > 0, "{report:#}");
}

#[test]
fn the_daemon_knows_the_job_and_time_of_a_snapshot_it_read_before_the_damage() {
    let jobs = format!(
        "{FILES_JOB}[jobs.other]\ntiers = [\"local\"]\n\
         sources = [{{ kind = \"path\", path = \"{{dir}}/other\" }}]\n"
    );
    let daemon = backup_daemon(&jobs);
    let a = backup(&daemon, "version 1");
    std::fs::create_dir_all(daemon.dir.path().join("other")).unwrap();
    let before_other = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let other = daemon.backup_now("other");
    damage(&daemon.repo().join("snapshots").join(&other));

    // Listed under its own job, with the job and time the catalog read before.
    let listed = daemon.drctl_json(&["backups", "--job", "other"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["id"], other.as_str());
    assert_eq!(listed[0]["job"], "other");
    assert!(listed[0]["damaged"].is_string(), "{listed:#}");
    let files = daemon.drctl_json(&["backups", "--job", "files"]);
    assert_eq!(files.as_array().unwrap().len(), 1, "{files:#}");

    // Another job's damaged snapshot, or one taken after --at, is not in the way.
    let target = daemon.dir.path().join("files");
    let t = target.to_str().unwrap();
    let report = daemon.drctl_json(&[
        "restore",
        "--backup-id",
        "latest",
        "--job",
        "files",
        "--target",
        t,
    ]);
    assert_eq!(report["snapshot"]["id"], a.as_str());
    let at = daemon.dir.path().join("at");
    let report = daemon.drctl_json(&[
        "restore",
        "--backup-id",
        "latest",
        "--at",
        &before_other,
        "--target",
        at.to_str().unwrap(),
    ]);
    assert_eq!(report["snapshot"]["id"], a.as_str());
    // Its own job's latest is refused, and so is latest of all jobs.
    for args in [
        vec![
            "restore",
            "--backup-id",
            "latest",
            "--job",
            "other",
            "--target",
            t,
        ],
        vec!["restore", "--backup-id", "latest", "--target", t],
    ] {
        let out = daemon.drctl(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(stderr(&out).contains(&other), "{}", text(&out));
    }
}
