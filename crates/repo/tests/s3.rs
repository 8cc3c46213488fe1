//! drd-repo on S3-compatible storage, against a real server (moto on loopback): the
//! Storage contract, backup/restore/verify on a bucket, replication to it and restores
//! from it alone, fallback reads, locks, and an endpoint that goes away (a clear error in
//! bounded time, nothing damaged, replication catches up when it is back).
//!
//! Skipped with a message when moto is not installed, except under CI (see common/moto.rs).

// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::moto::{self, Moto};
use common::{describe, random_bytes, restore_all, unix_ms_now, Fixture};
use drd_repo::{
    BackupOptions, BackupPlan, Error, InitOptions, LocalDir, RepoOptions, Repository, S3Options,
    S3Storage, Source, Storage, VerifyOptions,
};

fn options(moto: &Moto, bucket: &str, prefix: &str) -> S3Options {
    let mut o = S3Options::new(bucket, prefix);
    o.endpoint = Some(moto.endpoint());
    o.region = Some(moto::REGION.into());
    o.access_key_id = Some(moto::ACCESS_KEY_ID.into());
    o.secret_access_key = Some(moto::SECRET_ACCESS_KEY.into());
    o.allow_http = true;
    o
}

fn s3(moto: &Moto, bucket: &str, prefix: &str) -> Arc<dyn Storage> {
    Arc::new(S3Storage::new(&options(moto, bucket, prefix)).unwrap())
}

/// A tree of a few MiB: large and small files, a subdirectory, a symlink.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("big.bin"), random_bytes(3 * 1024 * 1024 + 5)).unwrap();
    std::fs::write(root.join("sub/mid.bin"), random_bytes(700 * 1024)).unwrap();
    for i in 0..20 {
        std::fs::write(
            root.join(format!("sub/deeper/small-{i}")),
            random_bytes(100 + i),
        )
        .unwrap();
    }
    std::fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("big.bin", root.join("link")).unwrap();
}

fn backup(repo: &Repository, root: &Path) -> drd_repo::BackupSummary {
    let plan = BackupPlan {
        job: "test".into(),
        host: None,
        parent: None,
        sources: vec![Source::Path {
            root: root.to_path_buf(),
            excludes: vec![],
        }],
    };
    repo.backup(plan, &BackupOptions::default(), &mut |_| {})
        .unwrap()
}

/// Restores the latest snapshot into `target` and checks it equals `source` as it is now.
fn assert_latest_restores(repo: &Repository, source: &Path, target: &Path) {
    let snap = repo.latest(None).unwrap().expect("a snapshot");
    restore_all(repo, &snap, target).unwrap();
    let restored = common::restored(target, source);
    assert_eq!(
        describe(source),
        describe(&restored),
        "restored tree differs"
    );
}

fn verify_clean(repo: &Repository) -> drd_repo::VerifyReport {
    let report = repo
        .verify(
            &VerifyOptions {
                read_data: true,
                subset_percent: None,
                job: None,
                threads: 2,
            },
            &mut |_| {},
        )
        .unwrap();
    assert!(
        report.is_ok(),
        "verify found problems: {:?}",
        report.problems
    );
    report
}

fn io_kind(err: &Error) -> Option<std::io::ErrorKind> {
    match err {
        Error::Io { source, .. } => Some(source.kind()),
        _ => None,
    }
}

#[test]
fn s3_storage_keeps_the_local_dir_contract() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("contract");
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn Storage> = Arc::new(LocalDir::new(dir.path()));
    let remote = s3(&moto, "contract", "hosts/web-1/");
    let neighbour = s3(&moto, "contract", "hosts/web-10");

    for s in [&local, &remote] {
        s.write_atomic("data/ab/abcdef", b"pack bytes").unwrap();
        s.write_atomic("data/cd/cdef01", b"other pack").unwrap();
        s.write_atomic("index/01", b"idx").unwrap();
        s.write_atomic("locks/me", b"{}").unwrap();
    }
    for s in [&local, &remote] {
        let d = s.describe("config");
        assert_eq!(s.list("data").unwrap(), ["ab/abcdef", "cd/cdef01"], "{d:?}");
        assert_eq!(s.list("index").unwrap(), ["01"], "{d:?}");
        assert!(s.list("snapshots").unwrap().is_empty(), "{d:?}");
        assert_eq!(s.read("index/01").unwrap(), b"idx");
        assert_eq!(s.read_at("data/ab/abcdef", 5, 5).unwrap(), b"bytes");
        assert_eq!(s.size("data/cd/cdef01").unwrap(), Some(10));
        assert_eq!(s.size("config").unwrap(), None);
        let missing = s.read("config").unwrap_err();
        assert_eq!(
            io_kind(&missing),
            Some(std::io::ErrorKind::NotFound),
            "{missing}"
        );
        s.remove("locks/me").unwrap();
        s.remove("locks/me").unwrap();
        assert!(s.list("locks").unwrap().is_empty());
    }
    assert_eq!(
        remote.describe("data/ab/abcdef").to_str(),
        Some("s3://contract/hosts/web-1/data/ab/abcdef")
    );
    assert_eq!(
        remote.location().to_str(),
        Some("s3://contract/hosts/web-1")
    );
    // Prefixes are separate repositories: web-10 sees nothing of web-1.
    assert!(neighbour.list("data").unwrap().is_empty());
    // A missing bucket is said as such, not taken for a missing file.
    let nowhere = s3(&moto, "no-such-bucket", "web-1");
    for err in [
        nowhere.read("config").unwrap_err(),
        nowhere.list("index").unwrap_err(),
        nowhere.write_atomic("config", b"x").unwrap_err(),
    ] {
        assert!(
            err.to_string().contains(&format!(
                "bucket no-such-bucket does not exist at {}",
                moto.endpoint()
            )),
            "{err}"
        );
        assert_ne!(io_kind(&err), Some(std::io::ErrorKind::NotFound), "{err}");
    }
    assert_eq!(
        moto.keys("contract", "hosts/"),
        [
            "hosts/web-1/data/ab/abcdef",
            "hosts/web-1/data/cd/cdef01",
            "hosts/web-1/index/01"
        ]
    );
}

#[test]
fn a_repository_on_s3_backs_up_restores_and_verifies() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("backups");
    let fx = Fixture::new();
    let source = fx.mkdir("source");
    make_tree(&source);

    let storage = s3(&moto, "backups", "web-1");
    // Small packs, so the data spans several objects.
    let init = InitOptions {
        chunk_avg: 64 * 1024,
        pack_size: 1024 * 1024,
    };
    let repo = Repository::init_on(Arc::clone(&storage), &fx.keys, &init).unwrap();
    let first = backup(&repo, &source);
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);

    let keys = moto.keys("backups", "web-1/");
    assert!(keys.contains(&"web-1/config".to_string()), "{keys:?}");
    let packs = keys.iter().filter(|k| k.starts_with("web-1/data/")).count();
    assert!(packs >= 3, "expected several packs: {keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("web-1/index/")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("web-1/snapshots/")),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("web-1/locks/")),
        "a lock was left behind: {keys:?}"
    );

    // A change, a second (incremental) backup, through a freshly opened handle.
    std::fs::write(source.join("sub/mid.bin"), random_bytes(300 * 1024)).unwrap();
    let reopened = Repository::open_on(
        s3(&moto, "backups", "web-1"),
        &fx.keys,
        RepoOptions::default(),
    )
    .unwrap();
    backup(&reopened, &source);
    assert_eq!(reopened.snapshots().unwrap().len(), 2);

    assert_latest_restores(&reopened, &source, &fx.dir.path().join("target"));
    let report = verify_clean(&reopened);
    assert_eq!(report.snapshots_checked, 2);
    assert!(
        report.packs_read >= 3 && report.blobs_read > 0,
        "{report:?}"
    );
    assert!(report.reclaimable_packs.is_empty(), "{report:?}");
}

#[test]
fn replicate_to_s3_then_restore_from_s3_alone() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("offsite");
    let fx = Fixture::new();
    let source = fx.mkdir("source");
    make_tree(&source);
    fx.backup(&source, None);
    std::fs::write(source.join("new-file"), random_bytes(50_000)).unwrap();
    fx.backup(&source, None);

    let dest = s3(&moto, "offsite", "web-1/");
    let first = fx.repo.replicate_to(&dest, &mut |_| {}).unwrap();
    let local_files: usize = ["data", "index", "snapshots"]
        .iter()
        .map(|d| fx.repo.storage().list(d).unwrap().len())
        .sum();
    assert_eq!(first.files_copied, local_files as u64 + 1, "{first:?}");
    let again = fx.repo.replicate_to(&dest, &mut |_| {}).unwrap();
    assert_eq!(again.files_copied, 0, "{again:?}");

    // The machine is gone: only the bucket and the key file are left.
    std::fs::remove_dir_all(fx.repo_path()).unwrap();
    let offsite = Repository::open_on(
        s3(&moto, "offsite", "web-1"),
        &fx.keys,
        RepoOptions::default(),
    )
    .unwrap();
    assert_eq!(offsite.snapshots().unwrap().len(), 2);
    assert_latest_restores(&offsite, &source, &fx.dir.path().join("target"));
    verify_clean(&offsite);
}

#[test]
fn a_pack_lost_locally_is_read_from_the_s3_replica() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("replica");
    let fx = Fixture::new();
    let source = fx.mkdir("source");
    make_tree(&source);
    fx.backup(&source, None);
    let replica = s3(&moto, "replica", "web-1");
    fx.repo.replicate_to(&replica, &mut |_| {}).unwrap();

    // Every local pack is lost.
    let packs = fx.repo.storage().list("data").unwrap();
    assert!(!packs.is_empty());
    for p in &packs {
        std::fs::remove_file(fx.repo_path().join("data").join(p)).unwrap();
    }
    let alone = Repository::open(&fx.repo_path(), &fx.keys).unwrap();
    let snap = alone.latest(None).unwrap().unwrap();
    let err = restore_all(&alone, &snap, &fx.dir.path().join("fails")).unwrap_err();
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::NotFound), "{err}");

    let with_replica = Repository::open(&fx.repo_path(), &fx.keys)
        .unwrap()
        .with_fallback(replica);
    assert_latest_restores(&with_replica, &source, &fx.dir.path().join("target"));
}

#[test]
fn locks_on_s3_exclude_and_stale_ones_are_broken() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("locks");
    let fx = Fixture::new();
    let source = fx.mkdir("source");
    make_tree(&source);
    let storage = s3(&moto, "locks", "web-1");
    let repo =
        Repository::init_on(Arc::clone(&storage), &fx.keys, &InitOptions::default()).unwrap();
    backup(&repo, &source);

    let now_ms = unix_ms_now();
    let lock = |heartbeat_ms: i64| {
        serde_json::to_vec(&serde_json::json!({
            "host": "other-host", "pid": 4242, "exclusive": true,
            "started_ms": heartbeat_ms, "heartbeat_ms": heartbeat_ms, "lease_ms": 600_000,
        }))
        .unwrap()
    };
    // Another host holds an exclusive lock (a prune running there).
    storage
        .write_atomic("locks/other-host-4242-live", &lock(now_ms))
        .unwrap();
    let plan = || BackupPlan {
        job: "test".into(),
        host: None,
        parent: None,
        sources: vec![Source::Path {
            root: source.clone(),
            excludes: vec![],
        }],
    };
    let err = repo
        .backup(plan(), &BackupOptions::default(), &mut |_| {})
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Locked { .. }), "{msg}");
    assert!(
        msg.contains("other-host pid 4242")
            && msg.contains("s3://locks/web-1/locks/other-host-4242-live"),
        "{msg}"
    );
    assert_eq!(
        repo.snapshots().unwrap().len(),
        1,
        "a locked backup wrote a snapshot"
    );

    // Its lease ran out long ago: the next backup breaks it and says so.
    storage.remove("locks/other-host-4242-live").unwrap();
    storage
        .write_atomic("locks/other-host-4242-old", &lock(now_ms - 3_600_000))
        .unwrap();
    let summary = repo
        .backup(plan(), &BackupOptions::default(), &mut |_| {})
        .unwrap();
    assert!(
        summary.warnings.iter().any(|w| w.contains("lease expired")
            && w.contains("s3://locks/web-1/locks/other-host-4242-old")),
        "{:?}",
        summary.warnings
    );
    assert!(storage.list("locks").unwrap().is_empty());
}

#[test]
fn an_unreachable_endpoint_fails_fast_and_replication_catches_up() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("flaky");
    let fx = Fixture::new();
    let source = fx.mkdir("source");
    make_tree(&source);
    fx.backup(&source, None);
    let dest = s3(&moto, "flaky", "web-1");
    fx.repo.replicate_to(&dest, &mut |_| {}).unwrap();

    // A second backup, whose replication loses the endpoint after the first pack.
    for i in 0..8 {
        std::fs::write(source.join(format!("more-{i}")), random_bytes(2_500_000)).unwrap();
    }
    fx.backup(&source, None);
    let stopped = AtomicBool::new(false);
    let mut stopped_at = None;
    let result = fx.repo.replicate_to(&dest, &mut |s| {
        if s.files_copied >= 1 && !stopped.swap(true, Ordering::SeqCst) {
            moto.stop();
            stopped_at = Some(Instant::now());
        }
    });
    let took = stopped_at.expect("the endpoint was stopped").elapsed();
    let err = result.expect_err("replication to a stopped endpoint succeeded");
    let msg = err.to_string();
    let expect = format!(
        "cannot reach S3 endpoint {} (bucket flaky): connection refused",
        moto.endpoint()
    );
    assert!(msg.starts_with(&expect), "{msg}");
    eprintln!("replication to a stopped endpoint failed after {took:?}: {msg}");
    assert!(took < Duration::from_secs(15), "the error took {took:?}");

    // Opening the repository while it is away fails just as clearly and as fast.
    let started = Instant::now();
    let err = Repository::open_on(Arc::clone(&dest), &fx.keys, RepoOptions::default()).unwrap_err();
    assert!(err.to_string().starts_with(&expect), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // Back again: the interrupted copy left a repository with the first snapshot only,
    // and nothing damaged.
    moto.start_again();
    let offsite = Repository::open_on(Arc::clone(&dest), &fx.keys, RepoOptions::default()).unwrap();
    assert_eq!(offsite.snapshots().unwrap().len(), 1);
    verify_clean(&offsite);

    let caught_up = fx.repo.replicate_to(&dest, &mut |_| {}).unwrap();
    assert!(caught_up.files_copied >= 2, "{caught_up:?}");
    let offsite = Repository::open_on(dest, &fx.keys, RepoOptions::default()).unwrap();
    assert_eq!(offsite.snapshots().unwrap().len(), 2);
    let report = verify_clean(&offsite);
    assert!(report.reclaimable_packs.is_empty(), "{report:?}");
    assert_latest_restores(&offsite, &source, &fx.dir.path().join("target"));
}

#[test]
fn a_server_that_stops_answering_times_out() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("slow");
    let mut o = options(&moto, "slow", "web-1");
    o.request_timeout = Duration::from_secs(2);
    let storage = S3Storage::new(&o).unwrap();
    storage.write_atomic("config", b"{}").unwrap();

    moto.pause();
    let started = Instant::now();
    let err = storage.read("config").unwrap_err();
    let took = started.elapsed();
    moto.resume();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot reach S3 endpoint {} (bucket slow): no answer",
            moto.endpoint()
        )),
        "{msg}"
    );
    eprintln!("a read from a frozen server failed after {took:?}: {msg}");
    // Three attempts of 2 s and the backoff between them.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(storage.read("config").unwrap(), b"{}");
}

/// A storage that records every `read_at` it passes on.
struct Recording {
    inner: Arc<dyn Storage>,
    reads: std::sync::Mutex<Vec<(String, u64, usize)>>,
}

impl Storage for Recording {
    fn location(&self) -> std::path::PathBuf {
        self.inner.location()
    }
    fn describe(&self, name: &str) -> std::path::PathBuf {
        self.inner.describe(name)
    }
    fn read(&self, name: &str) -> drd_repo::Result<Vec<u8>> {
        self.inner.read(name)
    }
    fn read_at(&self, name: &str, offset: u64, len: usize) -> drd_repo::Result<Vec<u8>> {
        self.reads
            .lock()
            .unwrap()
            .push((name.to_string(), offset, len));
        self.inner.read_at(name, offset, len)
    }
    fn size(&self, name: &str) -> drd_repo::Result<Option<u64>> {
        self.inner.size(name)
    }
    fn write_atomic(&self, name: &str, data: &[u8]) -> drd_repo::Result<()> {
        self.inner.write_atomic(name, data)
    }
    fn stage(&self, dir: &str) -> drd_repo::Result<Box<dyn drd_repo::Staged>> {
        self.inner.stage(dir)
    }
    fn unfinished(&self, dir: &str) -> drd_repo::Result<Vec<(String, u64)>> {
        self.inner.unfinished(dir)
    }
    fn list(&self, dir: &str) -> drd_repo::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn remove(&self, name: &str) -> drd_repo::Result<()> {
        self.inner.remove(name)
    }
    fn forget_reads(&self) {
        self.inner.forget_reads();
    }
}

/// The GETs that reading `reads` in order takes with a read-ahead of 2 MiB windows: a
/// pack read that no fetched window covers fetches the window from its offset (to the
/// end of the pack at most); other objects, and reads of 2 MiB or more, are one GET each.
fn window_gets(reads: &[(String, u64, usize)], storage: &dyn Storage) -> usize {
    const WINDOW: u64 = 2 * 1024 * 1024;
    let mut windows: Vec<(&str, u64, u64)> = Vec::new();
    let mut gets = 0;
    for (name, offset, len) in reads {
        let end = offset + *len as u64;
        if *len == 0 {
            continue;
        }
        gets += 1;
        if !name.starts_with("data/") || *len as u64 >= WINDOW {
            continue;
        }
        if windows
            .iter()
            .any(|(n, from, to)| n == name && from <= offset && end <= *to)
        {
            gets -= 1;
            continue;
        }
        let size = storage.size(name).unwrap().unwrap();
        if offset + WINDOW.min(size - offset) >= end {
            windows.push((name, *offset, size.min(offset + WINDOW)));
        }
    }
    // Fewer than the read-ahead keeps at least, so none was dropped.
    assert!(windows.len() <= 16, "{} windows", windows.len());
    gets
}

#[test]
fn a_restore_reads_packs_in_windows_not_blob_by_blob() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("windows");
    let fx = Fixture::new();
    let source = fx.mkdir("source");
    std::fs::write(source.join("big.bin"), random_bytes(5 * 1024 * 1024)).unwrap();
    for i in 0..1500 {
        std::fs::write(source.join(format!("small-{i:04}")), random_bytes(2048)).unwrap();
    }
    let recording = Arc::new(Recording {
        inner: s3(&moto, "windows", "web-1"),
        reads: std::sync::Mutex::new(Vec::new()),
    });
    let repo = Repository::init_on(recording.clone(), &fx.keys, &InitOptions::default()).unwrap();
    backup(&repo, &source);

    let data_gets = || {
        moto.stderr()
            .lines()
            .filter(|l| l.contains("\"GET /windows/web-1/data/"))
            .count()
    };
    let before = data_gets();
    recording.reads.lock().unwrap().clear();
    // One reader thread, so that the reads come in one order and the count is exact
    // (two threads may both fetch a window that neither holds yet).
    let snap = repo.latest(None).unwrap().expect("a snapshot");
    let target = fx.dir.path().join("target");
    let options = drd_repo::RestoreOptions {
        paths: vec![],
        target: target.clone(),
        overwrite: false,
        threads: 1,
        beneath: None,
    };
    repo.restore(&snap, &options, &mut |_| {}).unwrap();
    assert_eq!(
        describe(&source),
        describe(&common::restored(&target, &source))
    );
    let gets = data_gets() - before;
    let reads = recording.reads.lock().unwrap().clone();
    let expected = window_gets(&reads, &*recording.inner);
    eprintln!(
        "restore of 1500 small files and 5 MiB from S3: {} blob reads, {gets} pack GETs",
        reads.len()
    );
    assert!(reads.len() > 1500, "{} blob reads", reads.len());
    assert_eq!(
        gets,
        expected,
        "GETs of pack objects for {} blob reads",
        reads.len()
    );
}

#[test]
fn a_pack_object_replaced_under_its_name_is_read_anew_by_the_next_operation() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("replaced");
    let fx = Fixture::new();
    let source = fx.mkdir("source");
    std::fs::write(source.join("f"), random_bytes(200_000)).unwrap();
    let storage = s3(&moto, "replaced", "web-1");
    let repo =
        Repository::init_on(Arc::clone(&storage), &fx.keys, &InitOptions::default()).unwrap();
    backup(&repo, &source);
    let structure = VerifyOptions::default();
    assert!(repo.verify(&structure, &mut |_| {}).unwrap().is_ok());

    // Another writer (a sync tool) puts a damaged copy under the pack's name; the same
    // open repository, well within the read-ahead's idle time, verifies again.
    let packs = storage.list("data").unwrap();
    assert_eq!(packs.len(), 1, "{packs:?}");
    let name = format!("data/{}", packs[0]);
    let mut bytes = storage.read(&name).unwrap();
    let len = bytes.len();
    bytes[len - 20] ^= 0x01;
    storage.write_atomic(&name, &bytes).unwrap();

    let report = repo.verify(&structure, &mut |_| {}).unwrap();
    assert!(
        !report.is_ok(),
        "verify served the pack from the earlier operation's read-ahead"
    );
}

#[test]
fn a_damaged_index_object_is_skipped_and_repaired_on_s3() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("mend");
    let fx = Fixture::new();
    let source = fx.mkdir("source");
    make_tree(&source);
    let storage = s3(&moto, "mend", "web-1");
    let init = InitOptions {
        chunk_avg: 64 * 1024,
        pack_size: 1024 * 1024,
    };
    let repo = Repository::init_on(Arc::clone(&storage), &fx.keys, &init).unwrap();
    backup(&repo, &source);
    let index = storage.list("index").unwrap();
    let name = format!("index/{}", index[0]);
    let mut bytes = storage.read(&name).unwrap();
    bytes[40] ^= 0x01;
    storage.write_atomic(&name, &bytes).unwrap();

    let reopened =
        Repository::open_on(s3(&moto, "mend", "web-1"), &fx.keys, RepoOptions::default()).unwrap();
    assert!(!reopened.index_warnings().is_empty());
    assert_latest_restores(&reopened, &source, &fx.dir.path().join("target"));
    let summary = reopened.repair_index().unwrap();
    assert_eq!(summary.index_files_removed.len(), 1, "{summary:?}");
    assert!(summary.packs_indexed >= 3, "{summary:?}");
    assert!(!storage.list("index").unwrap().contains(&index[0]));
    verify_clean(&reopened);
}

#[test]
fn a_listing_past_one_page_names_every_object() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.create_bucket("many");
    // One ListObjectsV2 answer holds at most 1000 keys: 1234 packs under data/ (spread
    // over the fan-out folders) and 1001 snapshots each take a second page.
    let packs: Vec<String> = (0..1234u32)
        .map(|i| {
            let id = format!("{:04x}{i:060}", i.wrapping_mul(2_654_435_761) >> 16);
            format!("{}/{id}", &id[..2])
        })
        .collect();
    let snapshots: Vec<String> = (0..1001u32).map(|i| format!("{i:064}")).collect();
    let storage = s3(&moto, "many", "web-1");
    let names: Vec<String> = packs
        .iter()
        .map(|p| format!("data/{p}"))
        .chain(snapshots.iter().map(|s| format!("snapshots/{s}")))
        .collect();
    // One writer waits out each answer in turn (about 14 ms on moto); four overlap.
    let started = Instant::now();
    std::thread::scope(|scope| {
        for part in names.chunks(names.len().div_ceil(4)) {
            let storage = &storage;
            scope.spawn(move || {
                for name in part {
                    storage.write_atomic(name, b"x").unwrap();
                }
            });
        }
    });
    eprintln!("{} PUTs to moto took {:?}", names.len(), started.elapsed());

    let mut want = packs.clone();
    want.sort();
    let listed = storage.list("data").unwrap();
    assert_eq!(listed.len(), want.len());
    assert!(listed == want, "the listing of data/ differs");
    assert_eq!(storage.list("snapshots").unwrap(), snapshots);
    // The test's own listing follows the continuation tokens too.
    assert_eq!(moto.keys("many", "web-1/data/").len(), packs.len());
    assert_eq!(
        moto.keys("many", "web-1/").len(),
        packs.len() + snapshots.len()
    );
}
