//! Offsite directory tiers: a snapshot is copied offsite after it lands, a restore
//! reads what the local tier lost from the copy, each tier verifies on its own, and an
//! offsite tier that cannot be written does not fail the backup and catches up later.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use drd_integration_tests::{backup_daemon_with, eventually, random_bytes, text, Daemon};

const JOB: &str = "[tiers.offsite]\nkind = \"dir\"\npath = \"{dir}/offsite/repo\"\n\
    [jobs.files]\ntiers = [\"local\", \"offsite\"]\n\
    sources = [{ kind = \"path\", path = \"{dir}/data\" }]\n";

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
    let list = daemon.drctl_json(&["backups", "--tier", tier]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(repo.join("data")).unwrap() {
        for pack in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            out.push(pack.unwrap().path());
        }
    }
    out
}

#[test]
fn snapshot_is_copied_offsite_and_restore_falls_back_to_it() {
    let daemon = backup_daemon_with(FAST_RETRY, JOB);
    let data = write_data(&daemon);
    let backed = daemon.drctl_json(&["backup", "--job", "files"]);
    let id = backed["snapshot"]["id"].as_str().unwrap().to_owned();
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
    let daemon = backup_daemon_with(FAST_RETRY, JOB);
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
    assert!(jobs[0]["offsite"][0]["last_error"].is_null(), "{jobs}");
}

#[test]
fn a_tier_cannot_be_both_a_landing_tier_and_a_copy() {
    let daemon = backup_daemon_with(FAST_RETRY, JOB);
    let config = std::fs::read_to_string(daemon.dir.path().join("drd.toml")).unwrap();
    let bad = config.replace(
        "[jobs.files]",
        "[jobs.other]\ntiers = [\"offsite\"]\nsources = [{ kind = \"path\", path = \"/etc/hostname\" }]\n[jobs.files]",
    );
    let path = daemon.dir.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let out = drd_integration_tests::drd(&[
        "check-config".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("jobs.files.tiers[1]")
            && text(&out).contains("where job \"other\" lands its backups"),
        "{}",
        text(&out)
    );
}

/// The names of the local tier's cached index files, sorted.
fn cached_index_names(daemon: &Daemon) -> Vec<String> {
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    let location = daemon.repo().display().to_string();
    let mut names: Vec<String> = conn
        .prepare("SELECT name FROM index_files WHERE location = ?1")
        .unwrap()
        .query_map([&location], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names.sort();
    names
}

fn cached_index_files(daemon: &Daemon) -> usize {
    let conn = rusqlite::Connection::open(daemon.catalog()).unwrap();
    // Rows of the local tier only (the offsite copy has its own).
    let location = daemon.repo().display().to_string();
    conn.query_row(
        "SELECT COUNT(*) FROM index_files WHERE location = ?1",
        [location],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as usize
}

#[test]
fn catalog_caches_index_files_and_verify_still_reads_the_tier() {
    let daemon = backup_daemon_with(FAST_RETRY, JOB);
    let data = write_data(&daemon);
    daemon.drctl_json(&["backup", "--job", "files"]);
    std::fs::write(data.join("second"), random_bytes(7, 50_000)).unwrap();
    daemon.drctl_json(&["backup", "--job", "files"]);
    let index: Vec<PathBuf> = std::fs::read_dir(daemon.repo().join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(index.len(), 2);
    assert_eq!(cached_index_files(&daemon), 2, "index files not cached");

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
    let mut on_tier: Vec<String> = std::fs::read_dir(daemon.repo().join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_tier.sort();
    assert_eq!(on_tier.len(), 3, "{on_tier:?}");
    assert_eq!(
        cached_index_names(&daemon),
        on_tier,
        "the cache should hold the tier's three index files and not the stale name"
    );
}

#[test]
fn prune_applies_the_job_retention_to_offsite_copies_too() {
    let jobs = JOB.replace(
        "[jobs.files]\n",
        "[jobs.files]\nretention = { keep_last = 1 }\n",
    );
    let daemon = backup_daemon_with(FAST_RETRY, &jobs);
    let data = write_data(&daemon);
    daemon.drctl_json(&["backup", "--job", "files"]);
    std::fs::write(data.join("more"), random_bytes(5, 30_000)).unwrap();
    let second = daemon.drctl_json(&["backup", "--job", "files"])["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The copy got the second snapshot after the run's retention had run, so it still
    // holds both until the next prune. The snapshot file is the last thing a copy
    // writes, but its shared lock goes a moment later, and prune (exclusive) started
    // inside that moment is answered "locked": wait for the lock to go too.
    // The copy locks both tiers (shared); the landing tier's lock goes last.
    let unlocked = |repo: &str| {
        std::fs::read_dir(daemon.dir.path().join(repo).join("locks"))
            .is_ok_and(|mut d| d.next().is_none())
    };
    eventually("both snapshots on the copy, and the copy done", || {
        snapshot_ids(&daemon, "offsite").len() == 2 && unlocked("offsite/repo") && unlocked("repo")
    });
    let pruned = daemon.drctl_json(&["prune", "--job", "files"]);
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

/// Flips one bit of the byte at `offset` in `file`.
fn flip_byte(file: &Path, offset: usize) {
    let mut body = std::fs::read(file).unwrap();
    body[offset] ^= 0x01;
    std::fs::write(file, body).unwrap();
}

/// Waits (generously: a loaded machine copies slowly) until the offsite tier holds
/// `count` snapshots and no copy holds its lock, so a prune is not answered "locked".
fn wait_for_copy(daemon: &Daemon, count: usize) {
    let copy_locks = daemon.dir.path().join("offsite/repo/locks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if snapshot_ids(daemon, "offsite").len() == count
            && std::fs::read_dir(&copy_locks).is_ok_and(|mut d| d.next().is_none())
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "the offsite tier did not get {count} snapshots; log:\n{}",
        daemon.log()
    );
}

/// `drctl verify --tier local --read-data` finds the damage (so the restore below
/// must have read those blobs from the copy).
fn assert_local_damaged(daemon: &Daemon) {
    let local = daemon.drctl(&["verify", "--tier", "local", "--read-data"]);
    assert_eq!(local.status.code(), Some(1), "{}", text(&local));
}

#[test]
fn a_damaged_blob_on_the_landing_tier_is_read_from_the_copy() {
    let daemon = backup_daemon_with(FAST_RETRY, JOB);
    let data = write_data(&daemon);
    daemon.drctl_json(&["backup", "--job", "files"]);
    wait_for_copy(&daemon, 1);

    // One flipped bit in the first blob of every landing pack: no blob there is whole
    // enough to decrypt, and the copy's packs are untouched.
    for pack in packs(&daemon.repo()) {
        flip_byte(&pack, 40);
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
    let daemon = backup_daemon_with(FAST_RETRY, JOB);
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

    let config = std::fs::read_to_string(&daemon.config).unwrap();
    let config = config.replace(
        "[jobs.files]\n",
        "[jobs.files]\nretention = { keep_last = 1 }\n",
    );
    std::fs::write(&daemon.config, config).unwrap();
    let out = daemon.drctl(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));

    let before = packs(&daemon.repo());
    let pruned = daemon.drctl_json(&["prune", "--job", "files"]);
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
        flip_byte(pack, 40);
    }
    assert_local_damaged(&daemon);
    daemon.restore_and_compare(
        &["--backup-id", "latest", "--job", "files"],
        &data,
        "restored",
    );
}
