//! An S3 tier with more than 1000 objects under one prefix, the most one ListObjectsV2
//! answer holds: drd must follow the continuation tokens wherever it lists, or it sees
//! only the first page. A job lands on an S3 tier (moto on loopback) whose packs are
//! forced small, so one backup of 1100 small files writes over 1100 packs under `data/`.
//! The copy to the `local` tier finds what to copy by listing that `data/`: every pack
//! must arrive, verify (reading all data) must count them all there, and a prune on the
//! S3 tier must delete every one; the test's own listing, which follows the tokens too,
//! must agree with drd's counts.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use drd_integration_tests::moto::{Moto, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use drd_integration_tests::{backup_daemon, packs, random_bytes, test_seed, text, Daemon};

/// Files of the big backup: each its own blob, and (with 1 KiB packs) its own pack.
const FILES: u64 = 1100;
/// More than a 1 KiB pack holds, after encryption: one blob per pack.
const FILE_SIZE: usize = 1500;
const BUCKET: &str = "drd";

fn jobs(moto: &Moto) -> String {
    format!(
        "[tiers.s3]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{BUCKET}\"\n\
         prefix = \"host/\"\naccess_key_id = \"{ACCESS_KEY_ID}\"\n\
         secret_access_key = \"{SECRET_ACCESS_KEY}\"\n\
         [jobs.many]\ntiers = [\"s3\", \"local\"]\n\
         sources = [{{ kind = \"path\", path = \"{{dir}}/data\" }}]\n",
        moto.endpoint()
    )
}

fn backup(daemon: &Daemon) -> String {
    daemon.backup_now("many")
}

/// Waits until the snapshot `id` is on the `local` tier: the replication worker copies
/// the S3 tier there after each backup, snapshots last.
fn wait_for_copy(daemon: &Daemon, id: &str) {
    let what = format!("snapshot {id} to be copied to the local tier");
    daemon.wait_until(&what, Duration::from_secs(300), || {
        daemon
            .snapshot_ids("local")
            .unwrap()
            .iter()
            .any(|s| s == id)
    });
}

/// `drctl verify --tier TIER ARGS --json`: the one tier's report, which must be clean.
fn verify(daemon: &Daemon, tier: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["verify", "--tier", tier];
    all.extend_from_slice(args);
    all.push("--json");
    let out = daemon.drctl(&all);
    assert!(out.status.success(), "drctl {all:?}: {}", text(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tier"] == tier)
        .unwrap_or_else(|| panic!("no report for tier {tier}: {reports}"))
        .clone();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    report
}

/// The packs under a directory tier's `data/` (`ab/abcd...`; no temporaries).
fn local_packs(repo: &Path) -> BTreeSet<String> {
    let data = repo.join("data");
    packs(repo)
        .iter()
        .map(|p| p.strip_prefix(&data).unwrap().display().to_string())
        .collect()
}

/// Pack names (`ab/abcd...`) under the S3 tier's `data/`.
fn s3_packs(moto: &Moto) -> Vec<String> {
    moto.keys(BUCKET, "host/data/")
        .into_iter()
        .map(|k| k.strip_prefix("host/data/").unwrap().to_owned())
        .collect()
}

#[test]
fn more_than_a_thousand_packs_on_s3_are_copied_verified_and_pruned() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket(BUCKET);
    let daemon = backup_daemon(&jobs(&moto));
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("first.txt"), "the repository is made\n").unwrap();
    backup(&daemon);

    // Small packs: 1 KiB, the least drd accepts. The repository's config holds the pack
    // size in the clear (only its secret is encrypted), and drd reads it each time it
    // opens the repository, at every run.
    let config = moto
        .get(BUCKET, "host/config")
        .expect("repository config on S3");
    let mut config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["pack_size"], 16 * 1024 * 1024, "{config}");
    config["pack_size"] = 1024.into();
    moto.put(
        BUCKET,
        "host/config",
        &serde_json::to_vec_pretty(&config).unwrap(),
    );

    let seed = test_seed();
    // random_bytes uses `seed | 1`: seeds 2 apart give different files.
    for i in 0..FILES {
        std::fs::write(
            data.join(format!("f{i:04}")),
            random_bytes(seed.wrapping_add(2 * i), FILE_SIZE),
        )
        .unwrap();
    }
    let started = Instant::now();
    let big = backup(&daemon);
    eprintln!(
        "backup of {FILES} files into 1 KiB packs on moto took {:?}",
        started.elapsed()
    );
    let packs = s3_packs(&moto);
    assert!(
        packs.len() as u64 > FILES,
        "{} packs on S3, expected one per file and more",
        packs.len()
    );

    // The offsite copy lists the S3 tier's data/ to find what to copy: every pack of
    // it, not only the first 1000, must reach the local tier.
    let started = Instant::now();
    wait_for_copy(&daemon, &big);
    eprintln!(
        "copy of {} packs from moto took {:?}",
        packs.len(),
        started.elapsed()
    );
    let copied = local_packs(&daemon.repo());
    let on_s3: BTreeSet<String> = packs.iter().cloned().collect();
    assert_eq!(
        on_s3.difference(&copied).count(),
        0,
        "packs on S3 that the local copy lacks ({} on S3, {} copied)",
        on_s3.len(),
        copied.len()
    );

    // The copy verifies with every pack read, and drd's count of packs there agrees
    // with the test's listing of the S3 tier. (Verifying the S3 tier itself reads each
    // indexed pack by name, nothing a listing decides, and takes about 30 s on moto:
    // three requests per pack; it is verified below once the prune has thinned it.)
    let local = verify(&daemon, "local", &["--read-data"]);
    assert_eq!(local["packs"], packs.len() as u64, "{local}");
    assert_eq!(local["packs_read"], packs.len() as u64, "{local}");
    daemon.restore_and_compare(&["--backup-id", &big, "--tier", "local"], &data, "copy");

    // Every file goes; the next backup holds one new one. With keep_last = 1 the prune
    // deletes the packs of both earlier snapshots, those past the first page of a
    // listing too.
    for entry in std::fs::read_dir(&data).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::fs::write(data.join("after.txt"), random_bytes(!seed, 5000)).unwrap();
    let last = backup(&daemon);
    // The prune needs the tier to itself: let the copy of the last snapshot end first.
    wait_for_copy(&daemon, &last);
    daemon.set_retention("many", "retention = { keep_last = 1 }");
    let started = Instant::now();
    let report = daemon.drctl_json(&["prune", "--job", "many"]);
    eprintln!("prune on moto took {:?}", started.elapsed());
    let tier = report["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "s3")
        .unwrap_or_else(|| panic!("no s3 tier in {report}"));
    let deleted = tier["gc"]["packs_deleted"].as_u64().unwrap()
        + tier["gc"]["orphan_packs_deleted"].as_u64().unwrap();
    assert_eq!(deleted, packs.len() as u64, "{tier}");

    let left = s3_packs(&moto);
    let past_first_page: Vec<&String> = packs[1000..].iter().filter(|p| left.contains(p)).collect();
    assert!(
        past_first_page.is_empty(),
        "packs past the first page of the listing survived the prune: {past_first_page:?}"
    );
    assert!(
        packs.iter().all(|p| !left.contains(p)),
        "packs of the forgotten snapshots survived the prune"
    );
    let s3 = verify(&daemon, "s3", &[]);
    assert_eq!(s3["packs"], left.len() as u64, "{s3}");
    assert_eq!(s3["reclaimable_bytes"], 0, "{s3}");
    assert_eq!(
        daemon
            .drctl_json(&["backups", "--tier", "s3"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
