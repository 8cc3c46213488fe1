//! Offsite directory tiers: a snapshot is copied offsite after it lands, a restore
//! reads what the local tier lost from the copy, each tier verifies on its own, and an
//! offsite tier that cannot be written does not fail the backup and catches up later.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use drd_integration_tests::{
    backup_daemon_with, check_config, eventually, flip_byte, index_files, packs, random_bytes,
    text, Daemon, OFFSITE_FILES_JOB,
};

const FAST_RETRY: &str = "replication_retry_max = \"1s\"";

fn write_data(daemon: &Daemon) -> PathBuf {
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    for i in 0..20u64 {
        std::fs::write(data.join(format!("sub/f{i}")), random_bytes(i, 40_000)).unwrap();
    }
    std::fs::write(data.join("notes.txt"), "offsite matters\n").unwrap();
    data
}

fn snapshot_ids(daemon: &Daemon, tier: &str) -> Vec<String> {
    daemon
        .snapshot_ids(tier)
        .unwrap_or_else(|e| panic!("drctl backups --tier {tier}: {e}"))
}

#[test]
fn snapshot_is_copied_offsite_and_restore_falls_back_to_it() {
    let daemon = backup_daemon_with(FAST_RETRY, OFFSITE_FILES_JOB);
    let data = write_data(&daemon);
    let id = daemon.backup_now("files");
    eventually("the snapshot to reach the offsite tier", || {
        snapshot_ids(&daemon, "offsite").contains(&id)
    });

    // Lose every pack on the local tier: the restore reads them all from the copy.
    let lost = packs(&daemon.repo());
    assert!(!lost.is_empty());
    for pack in &lost {
        std::fs::remove_file(pack).unwrap();
    }
    daemon.restore_and_compare(
        &["--backup-id", "latest", "--job", "files"],
        &data,
        "restored",
    );

    // Each tier verifies on its own: the local one is missing its packs, the copy is
    // whole.
    let local = daemon.drctl(&["verify", "--tier", "local"]);
    assert_eq!(local.status.code(), Some(1), "{}", text(&local));
    assert!(text(&local).contains("missing"), "{}", text(&local));
    let offsite = daemon.drctl(&["verify", "--tier", "offsite", "--read-data"]);
    assert!(offsite.status.success(), "{}", text(&offsite));

    // And the copy alone restores, as on a host whose local disk is gone.
    daemon.restore_and_compare(
        &["--backup-id", &id, "--tier", "offsite"],
        &data,
        "from-offsite",
    );
}

#[test]
fn unwritable_offsite_tier_does_not_fail_the_backup_and_catches_up() {
    let daemon = backup_daemon_with(FAST_RETRY, OFFSITE_FILES_JOB);
    write_data(&daemon);
    // A file where the offsite folder should be: every copy fails until it is gone.
    let blocker = daemon.dir.path().join("offsite");
    std::fs::write(&blocker, "not a directory").unwrap();

    let backed = daemon.drctl(&["backup", "--job", "files", "--json"]);
    assert!(backed.status.success(), "{}", text(&backed));
    let id = serde_json::from_slice::<serde_json::Value>(&backed.stdout).unwrap()["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the replication worker to report the failure", || {
        let status = daemon.drctl_json(&["status"]);
        status["workers"].as_array().unwrap().iter().any(|w| {
            w["name"] == "replication"
                && w["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("local -> offsite"))
        })
    });
    let audit = daemon.drctl(&["audit"]);
    assert!(
        text(&audit).contains("replicate local to offsite"),
        "{}",
        text(&audit)
    );

    // drctl jobs shows how far the copy is behind, and why.
    let jobs = daemon.drctl_json(&["jobs"]);
    let copy = &jobs[0]["offsite"][0];
    assert_eq!(copy["tier"], "offsite", "{jobs}");
    assert_eq!(copy["missing"], 1, "{jobs}");
    assert!(copy["last_error"].as_str().is_some(), "{jobs}");
    let table = daemon.drctl(&["jobs"]);
    assert!(
        text(&table).contains("files offsite offsite: 1 snapshot behind"),
        "{}",
        text(&table)
    );

    std::fs::remove_file(&blocker).unwrap();
    eventually("the offsite tier to catch up", || {
        daemon
            .drctl(&["backups", "--tier", "offsite", "--json"])
            .status
            .success()
            && snapshot_ids(&daemon, "offsite").contains(&id)
    });
    let verified = daemon.drctl(&["verify", "--tier", "offsite", "--read-data"]);
    assert!(verified.status.success(), "{}", text(&verified));
    let jobs = daemon.drctl_json(&["jobs"]);
    assert_eq!(jobs[0]["offsite"][0]["missing"], 0, "{jobs}");
    // The copy clears its error once the whole pass is done, which may be after the
    // snapshot shows on the tier.
    eventually("the offsite tier's error to clear", || {
        daemon.drctl_json(&["jobs"])[0]["offsite"][0]["last_error"].is_null()
    });
}

#[test]
fn a_tier_cannot_be_both_a_landing_tier_and_a_copy() {
    let daemon = backup_daemon_with(FAST_RETRY, OFFSITE_FILES_JOB);
    let config = std::fs::read_to_string(daemon.dir.path().join("drd.toml")).unwrap();
    let bad = config.replace(
        "[jobs.files]",
        "[jobs.other]\ntiers = [\"offsite\"]\nsources = [{ kind = \"path\", path = \"/etc/hostname\" }]\n[jobs.files]",
    );
    let path = daemon.dir.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("jobs.files.tiers[1]")
            && text(&out).contains("where job \"other\" lands its backups"),
        "{}",
        text(&out)
    );
}

#[test]
fn catalog_caches_index_files_and_verify_still_reads_the_tier() {
    let daemon = backup_daemon_with(FAST_RETRY, OFFSITE_FILES_JOB);
    let data = write_data(&daemon);
    daemon.drctl_json(&["backup", "--job", "files"]);
    std::fs::write(data.join("second"), random_bytes(7, 50_000)).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    let index = index_files(&daemon.repo());
    assert_eq!(index.len(), 2);
    assert_eq!(
        daemon.cached_index_names().len(),
        2,
        "index files not cached"
    );

    // Damage an index file on the tier: the daemon's reads use the cached copy, so a
    // restore still works, while verify reads the tier and reports the damage.
    let good = std::fs::read(&index[0]).unwrap();
    std::fs::write(&index[0], b"damaged").unwrap();
    daemon.restore_and_compare(
        &["--backup-id", "latest", "--job", "files"],
        &data,
        "restored",
    );
    let verify = daemon.drctl(&["verify", "--tier", "local"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(
        text(&verify).contains(&format!("index file {} is damaged", index[0].display())),
        "verify names the damaged index file: {}",
        text(&verify)
    );

    // A cached name the tier no longer lists (as after a prune rewrote the index)
    // leaves the cache at the next listing: the next backup's open.
    let location = daemon.repo().display().to_string();
    rusqlite::Connection::open(daemon.catalog())
        .unwrap()
        .execute(
            "INSERT INTO index_files (location, name, body) VALUES (?1, 'gone', x'00')",
            [&location],
        )
        .unwrap();
    std::fs::write(&index[0], &good).unwrap();
    std::fs::write(data.join("third"), random_bytes(8, 50_000)).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    let on_tier: Vec<String> = index_files(&daemon.repo())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(on_tier.len(), 3, "{on_tier:?}");
    assert_eq!(
        daemon.cached_index_names(),
        on_tier,
        "the cache should hold the tier's three index files and not the stale name"
    );
}

#[test]
fn prune_applies_the_job_retention_to_offsite_copies_too() {
    let jobs = OFFSITE_FILES_JOB.replace(
        "[jobs.files]\n",
        "[jobs.files]\nretention = { keep_last = 1 }\n",
    );
    let daemon = backup_daemon_with(FAST_RETRY, &jobs);
    let data = write_data(&daemon);
    daemon.drctl_json(&["backup", "--job", "files"]);
    std::fs::write(data.join("more"), random_bytes(5, 30_000)).unwrap();
    let second = daemon.backup_now("files");
    // The copy got the second snapshot after the run's retention had run, so it still
    // holds both until the next prune.
    wait_for_copy(&daemon, 2);
    let pruned = prune_files(&daemon);
    let tiers: Vec<&str> = pruned["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tier"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, ["local", "offsite"], "{pruned}");
    assert_eq!(
        snapshot_ids(&daemon, "offsite"),
        std::slice::from_ref(&second)
    );
    assert_eq!(snapshot_ids(&daemon, "local"), [second]);
    let verified = daemon.drctl(&["verify", "--tier", "offsite", "--read-data"]);
    assert!(verified.status.success(), "{}", text(&verified));
}

/// Waits (generously: a loaded machine copies slowly) until the offsite tier holds
/// `count` snapshots and the copy is done, so a prune is not answered "locked". The
/// snapshot file is the last thing a copy writes, but its shared locks go a moment
/// later: the copy locks both tiers, and the landing tier's lock goes last.
fn wait_for_copy(daemon: &Daemon, count: usize) {
    let unlocked =
        |repo: &Path| std::fs::read_dir(repo.join("locks")).is_ok_and(|mut d| d.next().is_none());
    let what = format!("the offsite tier to get {count} snapshots, and the copy done");
    daemon.wait_until(&what, Duration::from_secs(60), || {
        snapshot_ids(daemon, "offsite").len() == count
            && unlocked(&daemon.dir.path().join("offsite/repo"))
            && unlocked(&daemon.repo())
    });
}

/// `drctl prune --job files --json`, run again while it is answered busy on the landing
/// tier (which goes first, so nothing was pruned yet): the replication worker copies
/// again after each new snapshot, also one an earlier copy already took, so a copy can
/// start after [`wait_for_copy`] saw the tiers free.
fn prune_files(daemon: &Daemon) -> serde_json::Value {
    let landing_busy = format!("repository {}/ is locked", daemon.repo().display());
    let mut answer = None;
    daemon.wait_until("a prune not answered busy", Duration::from_secs(60), || {
        let out = daemon.drctl(&["prune", "--job", "files", "--json"]);
        let busy = out.status.code() == Some(75)
            && String::from_utf8_lossy(&out.stderr).contains(&landing_busy);
        answer = Some(out);
        !busy
    });
    let out = answer.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `drctl verify --tier local --read-data` finds the damage (so the restore below
/// must have read those blobs from the copy).
fn assert_local_damaged(daemon: &Daemon) {
    let local = daemon.drctl(&["verify", "--tier", "local", "--read-data"]);
    assert_eq!(local.status.code(), Some(1), "{}", text(&local));
}

#[test]
fn a_damaged_blob_on_the_landing_tier_is_read_from_the_copy() {
    let daemon = backup_daemon_with(FAST_RETRY, OFFSITE_FILES_JOB);
    let data = write_data(&daemon);
    daemon.drctl_json(&["backup", "--job", "files"]);
    wait_for_copy(&daemon, 1);

    // One flipped bit in the first blob of every landing pack: no blob there is whole
    // enough to decrypt, and the copy's packs are untouched.
    for pack in packs(&daemon.repo()) {
        flip_byte(&pack, 40, 0x01);
    }
    assert_local_damaged(&daemon);
    daemon.restore_and_compare(
        &["--backup-id", "latest", "--job", "files"],
        &data,
        "restored",
    );
}

#[test]
fn a_damaged_blob_is_read_from_the_copy_after_a_prune_repacked_both_tiers() {
    let daemon = backup_daemon_with(FAST_RETRY, OFFSITE_FILES_JOB);
    // Backup 0 stores `keep.bin` with 2 MiB that only backup 0 uses, in one pack; once
    // backup 0 is forgotten that pack is mostly garbage, and each tier's prune rewrites
    // `keep.bin`'s blobs into a new pack of its own, under a name the other tier lacks.
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("keep.bin"), random_bytes(10, 256 << 10)).unwrap();
    std::fs::write(data.join("cur.bin"), random_bytes(20, 2 << 20)).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    std::fs::write(data.join("cur.bin"), random_bytes(22, 2 << 20)).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    wait_for_copy(&daemon, 2);

    daemon.set_retention("files", "retention = { keep_last = 1 }");

    let before = packs(&daemon.repo());
    let pruned = prune_files(&daemon);
    for tier in pruned["tiers"].as_array().unwrap() {
        assert!(
            tier["gc"]["packs_repacked"].as_u64().unwrap() >= 1,
            "{pruned:#}"
        );
    }
    let offsite: Vec<PathBuf> = packs(&daemon.dir.path().join("offsite/repo"));
    let offsite_names: Vec<_> = offsite.iter().map(|p| p.file_name().unwrap()).collect();
    let repacked: Vec<PathBuf> = packs(&daemon.repo())
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(!repacked.is_empty());
    for pack in &repacked {
        assert!(
            !offsite_names.contains(&pack.file_name().unwrap()),
            "the copy holds {} too",
            pack.display()
        );
        flip_byte(pack, 40, 0x01);
    }
    assert_local_damaged(&daemon);
    daemon.restore_and_compare(
        &["--backup-id", "latest", "--job", "files"],
        &data,
        "restored",
    );
}
