//! Bare-metal recovery from S3: `drd snapshots|restore|verify --repo s3://BUCKET/PREFIX`
//! with only the key file and the AWS_* environment, against a real S3-compatible server
//! (moto on loopback). Skipped with a message when moto is not installed, except under CI.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use drd_integration_tests::moto::Moto;
use drd_integration_tests::{
    assert_same_tree, backup_daemon, bins, files_under, open_tempdir, random_bytes, text, FILES_JOB,
};
use nix::sys::signal::Signal;

const SECRET: &str = "s3cr3t-that-must-never-be-printed";

/// Runs offline `drd ARGS` with the AWS_* variables of `moto` (and our secret key).
fn drd_s3(moto: &Moto, args: &[&str]) -> Output {
    let mut cmd = Command::new(&bins().drd);
    cmd.args(args);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    cmd.env("AWS_SECRET_ACCESS_KEY", SECRET);
    cmd.output().unwrap()
}

/// Copies a repository directory into the bucket under `prefix`, as a replication would.
fn upload(moto: &Moto, bucket: &str, prefix: &str, repo: &Path) {
    for path in files_under(repo) {
        let rel = path.strip_prefix(repo).unwrap().to_str().unwrap();
        if !rel.starts_with("locks/") && !rel.contains("/.") {
            moto.put(
                bucket,
                &format!("{prefix}/{rel}"),
                &std::fs::read(&path).unwrap(),
            );
        }
    }
}

#[test]
fn a_bare_machine_restores_from_s3_with_only_the_bucket_and_the_key() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("offsite");

    let mut daemon = backup_daemon(FILES_JOB);
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(data.join("etc")).unwrap();
    std::fs::write(data.join("precious"), random_bytes(7, 3 << 20)).unwrap();
    std::fs::write(data.join("etc/app.conf"), "listen = 8080\n").unwrap();
    let snap = daemon.drctl_json(&["backup", "--job", "files"]);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    upload(&moto, "offsite", "web-1", &daemon.repo());

    // The new machine has the key file and the bucket's address, nothing else.
    let bare = open_tempdir();
    let key = bare.path().join("main.key");
    std::fs::copy(daemon.key(), &key).unwrap();
    let key = key.to_str().unwrap();
    let repo = "s3://offsite/web-1";

    let out = drd_s3(
        &moto,
        &["snapshots", "--repo", repo, "--key", key, "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], snap["snapshot"]["id"]);

    let target = bare.path().join("restored");
    let started = Instant::now();
    let out = drd_s3(
        &moto,
        &[
            "restore",
            "--repo",
            repo,
            "--key",
            key,
            "--backup-id",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("drd restore of 3 MiB from S3 took {:?}", started.elapsed());
    assert_same_tree(&data, &target.join(data.strip_prefix("/").unwrap()));

    let out = drd_s3(
        &moto,
        &["verify", "--repo", repo, "--key", key, "--read-data"],
    );
    assert!(out.status.success(), "{}", text(&out));

    // One flipped byte in a pack in the bucket: verify finds it and names the object.
    let pack = moto
        .keys("offsite", "web-1/data/")
        .into_iter()
        .next()
        .expect("a pack in the bucket");
    let mut body = moto.get("offsite", &pack).unwrap();
    let mid = body.len() / 2;
    body[mid] ^= 0x40;
    moto.put("offsite", &pack, &body);
    let out = drd_s3(
        &moto,
        &["verify", "--repo", repo, "--key", key, "--read-data"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("s3://offsite/{pack}")),
        "the damaged object is not named: {}",
        text(&out)
    );

    // The endpoint goes away: a clear error within seconds, and the secret never shows.
    moto.stop();
    let started = Instant::now();
    let out = drd_s3(&moto, &["snapshots", "--repo", repo, "--key", key]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let expect = format!(
        "cannot reach S3 endpoint {} (bucket offsite): connection refused",
        moto.endpoint()
    );
    assert!(text(&out).contains(&expect), "{}", text(&out));
    eprintln!("drd snapshots against a stopped endpoint failed after {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(!text(&out).contains(SECRET));
    moto.start_again();

    // No credentials anywhere: said plainly, before any request.
    let out = Command::new(&bins().drd)
        .args(["snapshots", "--repo", repo, "--key", key])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no S3 credentials for s3://offsite/web-1"),
        "{}",
        text(&out)
    );

    // `drd snapshots --repo REPO` exits `code` and says `says`.
    let refused = |repo: &str, code: i32, says: &str| {
        let out = drd_s3(&moto, &["snapshots", "--repo", repo, "--key", key]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
    };
    // A bucket that does not exist is named as the problem.
    refused(
        "s3://no-such-bucket/web-1",
        1,
        "bucket no-such-bucket does not exist at http://127.0.0.1:",
    );
    // A prefix with no repository is "not found" (66), as a missing directory is.
    refused(
        "s3://offsite/nothing-here",
        66,
        "s3://offsite/nothing-here is not a drd repository",
    );
}
