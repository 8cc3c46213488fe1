//! Restores: by time, in part, offline on a bare machine, and from a damaged or
//! interrupted repository.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use drd_integration_tests::{
    backup_daemon, backup_daemon_with, copy_tree, drd, eventually, flip_middle_byte, generate_key,
    open_tempdir, os, packs, random_bytes, restore_args, text, unix_ms_now, wait_clock_past,
    FILES_JOB, OFFSITE_FILES_JOB,
};
use nix::sys::signal::Signal;

#[test]
fn at_picks_the_newest_snapshot_at_or_before_a_time_and_path_restores_part() {
    let daemon = backup_daemon(FILES_JOB);
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(data.join("etc")).unwrap();
    std::fs::write(data.join("etc/app.conf"), "version 1").unwrap();
    std::fs::write(data.join("other"), "other").unwrap();
    // Times are in milliseconds: each step waits until the clock is past the one
    // before, so the two snapshots and the time between them are strictly ordered.
    let first = daemon.drctl_json(&["backup", "--job", "files"]);
    wait_clock_past(first["snapshot"]["unix_ms"].as_i64().unwrap());
    let between_ms = unix_ms_now();
    let between = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + Duration::from_millis(between_ms as u64),
    )
    .to_string();
    wait_clock_past(between_ms);
    std::fs::write(data.join("etc/app.conf"), "version 2").unwrap();
    let second = daemon.drctl_json(&["backup", "--job", "files"]);

    let target = daemon.dir.path().join("t1");
    let restored = daemon.drctl_json(&[
        "restore",
        "--backup-id",
        "latest",
        "--job",
        "files",
        "--at",
        &between,
        "--path",
        data.join("etc").to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(restored["snapshot"]["id"], first["snapshot"]["id"]);
    let restored_data = target.join(data.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(restored_data.join("etc/app.conf")).unwrap(),
        "version 1"
    );
    assert!(
        !restored_data.join("other").exists(),
        "--path restored more than asked"
    );

    // "1 second ago" is at or after the second snapshot once a second has passed.
    wait_clock_past(second["snapshot"]["unix_ms"].as_i64().unwrap() + 1000);
    let target = daemon.dir.path().join("t2");
    let mut args = restore_args("latest", &target);
    args.extend(["--at", "1 second ago"]);
    daemon.drctl_json(&args);
    let conf = target
        .join(data.strip_prefix("/").unwrap())
        .join("etc/app.conf");
    assert_eq!(std::fs::read_to_string(conf).unwrap(), "version 2");

    let out = daemon.drctl(&[
        "restore",
        "--backup-id",
        "latest",
        "--at",
        "last tuesday",
        "--target",
        "/tmp/x",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
}

#[test]
fn a_bare_machine_restores_with_only_the_repository_and_the_key() {
    let mut daemon = backup_daemon(FILES_JOB);
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("precious"), random_bytes(3, 1 << 20)).unwrap();
    let snap = daemon.drctl_json(&["backup", "--job", "files"]);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));

    // The "new machine": a copy of the repository and the key file, nothing else.
    let bare = open_tempdir();
    let repo = bare.path().join("offsite");
    copy_tree(&daemon.repo(), &repo);
    std::fs::copy(daemon.key(), bare.path().join("key")).unwrap();
    let (repo_s, key_s) = (repo.to_str().unwrap(), bare.path().join("key"));
    let key_s = key_s.to_str().unwrap();

    let out = drd(&[
        os("snapshots"),
        os("--repo"),
        os(repo_s),
        os("--key"),
        os(key_s),
        os("--json"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], snap["snapshot"]["id"]);

    let target = bare.path().join("restored");
    let out = drd(&[
        os("restore"),
        os("--repo"),
        os(repo_s),
        os("--key"),
        os(key_s),
        os("--backup-id"),
        os("latest"),
        os("--target"),
        target.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let restored = target
        .join(data.strip_prefix("/").unwrap())
        .join("precious");
    assert_eq!(std::fs::read(restored).unwrap(), random_bytes(3, 1 << 20));

    let out = drd(&[
        os("verify"),
        os("--repo"),
        os(repo_s),
        os("--key"),
        os(key_s),
        os("--read-data"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_wrong_key_is_refused_before_anything_is_written() {
    let daemon = backup_daemon(FILES_JOB);
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    std::fs::write(daemon.dir.path().join("data/f"), "x").unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);

    let other = daemon.dir.path().join("other.key");
    generate_key(&other);
    let target = daemon.dir.path().join("never");
    let out = drd(&[
        os("restore"),
        os("--repo"),
        daemon.repo().as_os_str(),
        os("--key"),
        other.as_os_str(),
        os("--backup-id"),
        os("latest"),
        os("--target"),
        target.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "this key does not open repository {}",
            daemon.repo().display()
        )),
        "{stderr}"
    );
    assert!(
        !target.exists(),
        "the target was created despite the wrong key"
    );
    // A key file is never echoed.
    let key_text = std::fs::read_to_string(&other).unwrap();
    assert!(!stderr.contains(key_text.trim()));
}

#[test]
fn a_flipped_byte_is_found_by_read_verify_with_the_files_it_breaks() {
    let daemon = backup_daemon(FILES_JOB);
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("victim.bin"), random_bytes(9, 4 << 20)).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    let reports = daemon.drctl_json(&["verify", "--read-data"]);
    assert!(
        reports[0]["problems"].as_array().unwrap().is_empty(),
        "{reports}"
    );

    // The biggest pack holds the file's data; flip one byte in its middle.
    damage_biggest_pack(&daemon.repo());

    let out = daemon.drctl(&["verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DAMAGED"), "{stdout}");
    assert!(
        stdout.contains("victim.bin"),
        "the damaged file is not named: {stdout}"
    );

    // Structure alone still looks fine: sizes and headers are intact.
    let out = daemon.drctl(&["verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_daemon_killed_mid_backup_leaves_a_repository_that_verifies() {
    let mut daemon = backup_daemon(FILES_JOB);
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("first"), "the first snapshot").unwrap();
    let first = daemon.drctl_json(&["backup", "--job", "files"]);
    for i in 0..6 {
        std::fs::write(data.join(format!("big{i}")), random_bytes(50 + i, 40 << 20)).unwrap();
    }
    let socket = daemon.socket();
    let backup = std::thread::spawn(move || {
        drd_integration_tests::drctl(&socket, &["backup", "--job", "files"])
    });
    // Kill once packs of the second backup are landing.
    let packs_before = packs(&daemon.repo()).len();
    eventually("the second backup to write packs", || {
        packs(&daemon.repo()).len() > packs_before + 2
    });
    daemon.kill();
    let out = backup.join().unwrap();
    assert!(
        !out.status.success(),
        "the backup finished before the kill: {}",
        text(&out)
    );

    let out = daemon.offline(&["verify"], &[os("--read-data")]);
    assert!(out.status.success(), "{}", text(&out));
    let target = daemon.dir.path().join("restored");
    let id = first["snapshot"]["id"].as_str().unwrap();
    let out = daemon.offline_restore(id, &target);
    assert!(out.status.success(), "{}", text(&out));
    let restored = target.join(data.strip_prefix("/").unwrap()).join("first");
    assert_eq!(
        std::fs::read_to_string(restored).unwrap(),
        "the first snapshot"
    );

    // A new daemon breaks the dead one's lock and backs up again.
    std::fs::remove_file(daemon.socket()).ok();
    daemon.spawn(&[]);
    daemon.wait_ready();
    let again = daemon.drctl_json(&["backup", "--job", "files"]);
    assert_eq!(again["snapshot"]["parent"], first["snapshot"]["id"]);
}

#[test]
fn the_catalog_is_rebuilt_from_the_repository_when_lost() {
    let mut daemon = backup_daemon(FILES_JOB);
    std::fs::create_dir_all(daemon.dir.path().join("data")).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    daemon.drctl_json(&["backup", "--job", "files"]);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    std::fs::remove_dir_all(daemon.dir.path().join("state")).unwrap();
    daemon.spawn(&[]);
    daemon.wait_ready();
    let list = daemon.drctl_json(&["backups", "--job", "files"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

/// Flips one byte in the middle of the biggest pack under `repo` (the big file's data)
/// and returns the pack's name.
fn damage_biggest_pack(repo: &std::path::Path) -> std::ffi::OsString {
    let pack = packs(repo)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    flip_middle_byte(&pack, 0x40);
    pack.file_name().unwrap().to_owned()
}

/// A tree with one big file between small ones, and a FIFO.
fn tree_with_a_big_file(data: &std::path::Path) -> Vec<u8> {
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a_first.txt"), "first\n").unwrap();
    let big = random_bytes(9, 4 << 20);
    std::fs::write(data.join("victim.bin"), &big).unwrap();
    std::fs::set_permissions(
        data.join("victim.bin"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    for i in 0..50 {
        std::fs::write(data.join(format!("sub/f{i}")), format!("small {i}\n")).unwrap();
    }
    std::fs::write(data.join("z_last.txt"), "last\n").unwrap();
    nix::unistd::mkfifo(
        &data.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .unwrap();
    // mkfifo is subject to the umask.
    std::fs::set_permissions(
        data.join("pipe"),
        std::os::unix::fs::PermissionsExt::from_mode(0o620),
    )
    .unwrap();
    big
}

/// Asserts what a restore of [`tree_with_a_big_file`] with `victim.bin` damaged left
/// at `root`: every other entry whole, the victim only as `victim.bin.damaged`.
fn assert_only_the_victim_is_damaged(root: &std::path::Path, big: &[u8]) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert_eq!(
        std::fs::read_to_string(root.join("a_first.txt")).unwrap(),
        "first\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("z_last.txt")).unwrap(),
        "last\n"
    );
    for i in 0..50 {
        assert_eq!(
            std::fs::read_to_string(root.join(format!("sub/f{i}"))).unwrap(),
            format!("small {i}\n")
        );
    }
    let pipe = std::fs::symlink_metadata(root.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo(), "{pipe:?}");
    assert_eq!(pipe.mode() & 0o7777, 0o620);
    assert!(
        !root.join("victim.bin").exists(),
        "the damaged file is under its real name"
    );
    let kept = std::fs::read(root.join("victim.bin.damaged")).unwrap();
    assert_eq!(
        kept.len(),
        big.len(),
        "the readable parts are not at their offsets"
    );
    let differing = kept.iter().zip(big).filter(|(a, b)| a != b).count();
    // One chunk (at most 2 MiB) is lost; the rest is there.
    assert!(
        differing > 0 && differing <= 2 << 20,
        "{differing} bytes differ"
    );
    let meta = std::fs::metadata(root.join("victim.bin.damaged")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
}

#[test]
fn a_blob_bad_on_every_tier_damages_only_its_file_and_the_restore_exits_1_with_the_list() {
    let mut daemon = backup_daemon(FILES_JOB);
    let data = daemon.dir.path().join("data");
    let big = tree_with_a_big_file(&data);
    daemon.drctl_json(&["backup", "--job", "files"]);
    damage_biggest_pack(&daemon.repo());
    let rel = data.strip_prefix("/").unwrap();

    let target = daemon.dir.path().join("t-json");
    let mut args = restore_args("latest", &target);
    args.push("--json");
    let out = daemon.drctl(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["damaged_total"], 1, "{report}");
    let damaged = &report["damaged"][0];
    assert_eq!(
        damaged["path"],
        format!("/{}/victim.bin", rel.display()),
        "{report}"
    );
    assert_eq!(
        damaged["kept_as"],
        target
            .join(rel)
            .join("victim.bin.damaged")
            .display()
            .to_string()
    );
    assert!(
        damaged["reason"].as_str().unwrap().contains("blob"),
        "{report}"
    );
    assert_eq!(report["fifos"], 1, "{report}");
    assert_only_the_victim_is_damaged(&target.join(rel), &big);

    let target = daemon.dir.path().join("t-text");
    let out = daemon.drctl(&restore_args("latest", &target));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("INCOMPLETE: 1 file could not be restored whole"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("victim.bin.damaged"), "{}", text(&out));
    assert!(text(&out).contains("restore incomplete"), "{}", text(&out));
    let rows = drd_integration_tests::audit_rows(&daemon.catalog());
    assert!(
        rows.iter()
            .any(|r| r.1 == "restore" && r.2 == "failed" && r.3.contains("INCOMPLETE")),
        "{rows:?}"
    );

    // The same offline, on a bare machine.
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    let target = daemon.dir.path().join("t-offline");
    let out = daemon.offline_restore("latest", &target);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("victim.bin"), "{}", text(&out));
    assert!(
        text(&out).contains("could not be restored whole"),
        "{}",
        text(&out)
    );
    assert_only_the_victim_is_damaged(&target.join(rel), &big);
}

#[test]
fn a_pack_damaged_on_the_landing_tier_is_read_from_the_offsite_copy() {
    let job = "replication_retry_max = \"1s\"";
    let daemon = backup_daemon_with(job, OFFSITE_FILES_JOB);
    let data = daemon.dir.path().join("data");
    let big = tree_with_a_big_file(&data);
    let id = daemon.backup_now("files");
    eventually("the snapshot to reach the offsite tier", || {
        daemon
            .snapshot_ids("offsite")
            .is_ok_and(|ids| ids.contains(&id))
    });
    let pack = damage_biggest_pack(&daemon.repo());
    daemon.restore_and_compare(&["--backup-id", "latest", "--job", "files"], &data, "whole");

    // Damaged in the copy too: only that file is lost.
    let offsite = daemon.dir.path().join("offsite/repo");
    let copy = packs(&offsite)
        .into_iter()
        .find(|p| p.file_name() == Some(pack.as_os_str()))
        .unwrap();
    flip_middle_byte(&copy, 0x40);
    let target = daemon.dir.path().join("both-bad");
    let mut args = restore_args("latest", &target);
    args.extend(["--job", "files"]);
    let out = daemon.drctl(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_only_the_victim_is_damaged(&target.join(data.strip_prefix("/").unwrap()), &big);
}
