//! A damaged index file: the offline commands of a bare machine (`drd snapshots`,
//! `restore`, `verify`) go on without it, and `drd repair index` / `drctl repair index`
//! rebuild the index from the pack headers, after which the daemon's index cache holds
//! exactly the files on the tier.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use drd_integration_tests::{
    assert_same_tree, audit_rows, backup_daemon, flip_middle_byte, index_files, os, random_bytes,
    running_as_root, text, Daemon, FILES_JOB,
};

/// Two backups (so two index files) of `DIR/data`; returns the data folder.
fn two_backups(daemon: &Daemon) -> PathBuf {
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("first.bin"), random_bytes(1, 400_000)).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    std::fs::write(data.join("second.bin"), random_bytes(2, 300_000)).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    data
}

#[test]
fn one_flipped_index_byte_no_longer_blocks_the_bare_metal_commands() {
    let daemon = backup_daemon(FILES_JOB);
    let data = two_backups(&daemon);
    let files = index_files(&daemon.repo());
    assert_eq!(files.len(), 2);
    flip_middle_byte(&files[0], 0x01);

    let out = daemon.offline(&["snapshots"], &[os("--json")]);
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&files[0].display().to_string()) && stderr.contains("drd repair index"),
        "the damaged index file is not reported with its fix: {stderr}"
    );

    let target = daemon.dir.path().join("restored");
    let out = daemon.offline_restore("latest", &target);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_tree(&data, &target.join(data.strip_prefix("/").unwrap()));

    // Verify: the whole report (both snapshots, all data read), the damage, exit 1.
    let out = daemon.offline(&["verify"], &[os("--read-data"), os("--json")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &reports[0];
    assert_eq!(report["snapshots"], 2, "{report}");
    assert!(report["blobs_read"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["reclaimable_bytes"], 0, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    let message = problems[0]["message"].as_str().unwrap();
    assert!(
        message.contains("index file") && message.contains("repair index"),
        "{message}"
    );

    let out = daemon.offline(&["repair", "index"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("repaired") && stdout.contains("removed damaged index file"),
        "{stdout}"
    );
    assert!(!files[0].exists());

    let out = daemon.offline(&["verify"], &[os("--read-data")]);
    assert!(out.status.success(), "{}", text(&out));
    let out = daemon.offline(&["repair", "index"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to repair"),
        "{}",
        text(&out)
    );
}

#[test]
fn drctl_repair_index_mends_the_tier_and_the_cache_keeps_no_removed_file() {
    let daemon = backup_daemon(FILES_JOB);
    let data = two_backups(&daemon);
    let files = index_files(&daemon.repo());
    assert_eq!(
        daemon.cached_index_names().len(),
        2,
        "index files not cached"
    );
    flip_middle_byte(&files[0], 0x01);

    // The cached good copy does not hide the damage from verify.
    let out = daemon.drctl(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("repair index"),
        "{}",
        text(&out)
    );

    let reports = daemon.drctl_json(&["repair", "index"]);
    let report = &reports[0];
    assert_eq!(report["tier"], "local", "{reports}");
    assert_eq!(
        report["index_files_removed"].as_array().unwrap().len(),
        1,
        "{reports}"
    );
    assert!(report["packs_indexed"].as_u64().unwrap() >= 1, "{reports}");
    assert!(!files[0].exists());
    let on_tier: Vec<String> = index_files(&daemon.repo())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        daemon.cached_index_names(),
        on_tier,
        "the cache should hold exactly the tier's index files after the repair"
    );

    let out = daemon.drctl(&["verify", "--read-data"]);
    assert!(out.status.success(), "{}", text(&out));
    daemon.restore_and_compare(&["--backup-id", "latest"], &data, "restored");
    assert!(
        audit_rows(&daemon.catalog())
            .iter()
            .any(|(_, action, outcome, detail)| action == "repair index"
                && outcome == "ok"
                && detail.contains("1 damaged index files removed")),
        "{:?}",
        audit_rows(&daemon.catalog())
    );
}

#[test]
fn a_viewer_may_not_repair_and_the_refusal_is_audited() {
    // Only root can be a client that holds less than every role (the daemon's own uid
    // holds them all).
    if !running_as_root("connecting as another user needs root") {
        return;
    }
    let (uid, gid) = (47_913, 47_913);
    let daemon = Daemon::start(&format!(
        "socket_group = {gid}\n[roles]\nviewer = {{ users = [{uid}] }}\noperator = {{ users = [1] }}"
    ));
    let out = daemon.drctl_as(uid, gid, &["repair", "index"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("repair index needs operator"),
        "{}",
        text(&out)
    );
    assert!(
        audit_rows(&daemon.catalog())
            .iter()
            .any(|(_, action, outcome, _)| action == "request repair index" && outcome == "refused"),
        "{:?}",
        audit_rows(&daemon.catalog())
    );
}
