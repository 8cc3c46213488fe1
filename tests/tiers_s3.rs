//! An S3 offsite tier against a real S3-compatible server on loopback (moto): copies
//! after each backup, a server that is down during a backup does not fail it, and the
//! copy catches up when the server is back; the copy restores and verifies on its own.
#![allow(clippy::unwrap_used)]

use drd_integration_tests::moto::{Moto, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use drd_integration_tests::{backup_daemon_with, eventually, random_bytes, text, Daemon};

fn jobs(moto: &Moto) -> String {
    format!(
        "[tiers.offsite]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"drd\"\n\
         prefix = \"host-1/\"\naccess_key_id = \"{ACCESS_KEY_ID}\"\n\
         secret_access_key = \"{SECRET_ACCESS_KEY}\"\n\
         [jobs.files]\ntiers = [\"local\", \"offsite\"]\n\
         sources = [{{ kind = \"path\", path = \"{{dir}}/data\" }}]\n",
        moto.endpoint()
    )
}

/// The snapshots on the S3 tier; none while it cannot be read.
fn offsite_ids(daemon: &Daemon) -> Vec<String> {
    daemon.snapshot_ids("offsite").unwrap_or_default()
}

fn backup(daemon: &Daemon) -> String {
    daemon.backup_now("files")
}

#[test]
fn s3_tier_copies_catches_up_after_an_outage_and_restores_alone() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("drd");
    let daemon = backup_daemon_with("replication_retry_max = \"1s\"", &jobs(&moto));
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..8u64 {
        std::fs::write(data.join(format!("f{i}")), random_bytes(i, 300_000)).unwrap();
    }

    let first = backup(&daemon);
    eventually("the first snapshot to reach S3", || {
        offsite_ids(&daemon).contains(&first)
    });
    assert!(
        moto.keys("drd", "host-1/")
            .iter()
            .any(|k| k.starts_with("host-1/snapshots/")),
        "no snapshot object under the prefix"
    );

    // The server goes away: the backup still lands locally, the copy fails and says so.
    moto.stop();
    std::fs::write(data.join("new"), random_bytes(99, 200_000)).unwrap();
    let second = backup(&daemon);
    eventually("the replication worker to report the outage", || {
        let status = daemon.drctl_json(&["status"]);
        status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "replication" && w["state"] == "Failing")
    });

    moto.start_again();
    eventually("the copy to catch up", || {
        offsite_ids(&daemon).contains(&second)
    });

    let verified = daemon.drctl(&["verify", "--tier", "offsite", "--read-data"]);
    assert!(verified.status.success(), "{}", text(&verified));
    daemon.restore_and_compare(
        &["--backup-id", &second, "--tier", "offsite"],
        &data,
        "from-s3",
    );
}
