//! Retention and garbage collection through the real daemon: `drctl prune --dry-run`
//! changes nothing and says which rule keeps each snapshot, a real prune removes the
//! rest and frees their data, retention runs after each backup, and a prune killed
//! at any point leaves every kept snapshot restorable (checked offline with
//! `drd verify --read-data` and `drd restore`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use drd_integration_tests::{
    audit_rows, backup_daemon, copy_tree, files_under, os, proc_state, random_bytes, text, Daemon,
    FILES_JOB,
};
use nix::sys::signal::Signal;

/// The size of the file that changes in every snapshot.
const CHANGING: usize = 2 << 20;

/// Backup `i`: a file that never changes and one that differs in every backup (so a
/// forgotten snapshot leaves its data as garbage; `random_bytes` ignores the seed's
/// lowest bit, hence the even seeds). Returns the snapshot id.
fn backup(daemon: &Daemon, i: u64) -> String {
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    if !data.join("keep.bin").exists() {
        std::fs::write(data.join("keep.bin"), random_bytes(7, 512 << 10)).unwrap();
    }
    std::fs::write(data.join("cur.bin"), random_bytes(1000 + 2 * i, CHANGING)).unwrap();
    daemon.backup_now("files")
}

/// Every file under `dir` with its size.
fn listing(dir: &Path) -> BTreeMap<String, u64> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let size = std::fs::metadata(&p).unwrap().len();
            (p.strip_prefix(dir).unwrap().display().to_string(), size)
        })
        .collect()
}

/// Offline, as on a bare machine: the repository verifies with every byte read, and
/// each snapshot in `kept` (id, backup number) restores with the right content.
fn assert_kept_restore(daemon: &Daemon, kept: &[(String, u64)], target: &Path) {
    let out = daemon.offline(&["verify"], &[os("--read-data")]);
    assert!(out.status.success(), "verify: {}", text(&out));
    for (id, i) in kept {
        let into = target.join(&id[..12]);
        let _ = std::fs::remove_dir_all(&into);
        let out = daemon.offline_restore(id, &into);
        assert!(out.status.success(), "restore {id}: {}", text(&out));
        let data = into.join(daemon.dir.path().join("data").strip_prefix("/").unwrap());
        assert!(
            std::fs::read(data.join("cur.bin")).unwrap() == random_bytes(1000 + 2 * i, CHANGING),
            "snapshot {id} (backup {i}) restored wrong content"
        );
        assert_eq!(
            std::fs::read(data.join("keep.bin")).unwrap(),
            random_bytes(7, 512 << 10)
        );
    }
}

#[test]
fn a_dry_run_says_why_each_snapshot_stays_and_a_real_prune_frees_the_rest() {
    let daemon = backup_daemon(FILES_JOB);
    let ids: Vec<String> = (0..5).map(|i| backup(&daemon, i)).collect();
    daemon.set_retention("files", "retention = { keep_last = 2 }");

    let before = listing(&daemon.repo());
    let report = daemon.drctl_json(&["prune", "--dry-run"]);
    assert_eq!(report["dry_run"], true);
    let tier = &report["tiers"][0];
    assert_eq!(tier["tier"], "local");
    assert!(tier["gc"].is_null());
    let job = &tier["jobs"][0];
    assert_eq!(job["job"], "files");
    assert_eq!(job["policy"], "keep_last=2");
    let decisions: Vec<(String, Vec<String>)> = job["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let kept_by = s["kept_by"].as_array().unwrap();
            (
                s["id"].as_str().unwrap().to_owned(),
                kept_by
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    let expected: Vec<(String, Vec<String>)> = ids
        .iter()
        .rev()
        .enumerate()
        .map(|(n, id)| {
            (
                id.clone(),
                if n < 2 {
                    vec!["last".to_owned()]
                } else {
                    vec![]
                },
            )
        })
        .collect();
    assert_eq!(
        decisions, expected,
        "newest first; the two newest kept by `last`"
    );
    assert_eq!(listing(&daemon.repo()), before, "a dry run touches nothing");
    let out = daemon.drctl(&["prune", "--dry-run"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("kept: last")
            && shown.contains("would go")
            && shown.contains("dry run: 3 snapshots would go, 2 stay; nothing was changed"),
        "{shown}"
    );

    let report = daemon.drctl_json(&["prune"]);
    assert_eq!(report["dry_run"], false);
    let gc = &report["tiers"][0]["gc"];
    assert!(
        gc["bytes_freed"].as_u64().unwrap() >= 3 * CHANGING as u64 / 2,
        "{gc:#}"
    );
    // Backup 0's pack holds the file every snapshot keeps and backup 0's own version of
    // the changing file: mostly garbage now, so it is rewritten, not kept whole.
    assert!(gc["packs_repacked"].as_u64().unwrap() >= 1, "{gc:#}");
    assert!(gc["packs_deleted"].as_u64().unwrap() >= 1, "{gc:#}");
    let listed = daemon.drctl_json(&["backups"]);
    let left: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec![ids[3].as_str(), ids[4].as_str()]);
    let target = daemon.dir.path().join("restored");
    assert_kept_restore(
        &daemon,
        &[(ids[3].clone(), 3), (ids[4].clone(), 4)],
        &target,
    );

    let rows = audit_rows(&daemon.catalog());
    assert!(
        rows.iter()
            .any(|r| r.1 == "prune" && r.3.starts_with("dry run: 3 snapshots")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.1 == "prune" && r.3.starts_with("3 snapshots forgotten, 2 kept")),
        "{rows:?}"
    );
}

#[test]
fn retention_runs_after_each_backup() {
    let daemon = backup_daemon(&FILES_JOB.replace(
        "[jobs.files]\n",
        "[jobs.files]\nretention = { keep_last = 2 }\n",
    ));
    let ids: Vec<String> = (0..4).map(|i| backup(&daemon, i)).collect();
    let listed = daemon.drctl_json(&["backups", "--job", "files"]);
    let left: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec![ids[2].as_str(), ids[3].as_str()]);
    // The forgotten snapshots' data went too: about two versions of the changing file
    // are stored, not four.
    let stored: u64 = listing(&daemon.repo().join("data")).values().sum();
    assert!(
        stored < 3 * CHANGING as u64 + (1 << 20),
        "{stored} bytes in packs"
    );
    let rows = audit_rows(&daemon.catalog());
    assert!(
        rows.iter()
            .any(|r| r.1 == "backup files" && r.3.contains("retention forgot 1 snapshots")),
        "{rows:?}"
    );
}

/// A step of a prune, as the repository directory shows it.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Forget removed its first snapshot file.
    Forgetting,
    /// Every forgotten snapshot file is gone; the prune marks and repacks next.
    Forgotten,
    /// A pack that was not there before (repacked blobs) is in place.
    PackWritten,
    /// An index file that was not there before is in place.
    IndexWritten,
    /// An index file of before is gone.
    IndexRemoved,
    /// A pack of before is gone.
    PackRemoved,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Forgetting,
        Step::Forgotten,
        Step::PackWritten,
        Step::IndexWritten,
        Step::IndexRemoved,
        Step::PackRemoved,
    ];

    /// Has the repository, listed as `now`, come this far from `before`?
    fn reached(self, before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> bool {
        let count = |files: &BTreeMap<String, u64>, dir: &str| {
            files.keys().filter(|f| f.starts_with(dir)).count()
        };
        // Temporaries (a file being written) are not there yet.
        let new_in = |dir: &str| {
            now.keys()
                .any(|f| f.starts_with(dir) && !before.contains_key(f) && !f.contains("/."))
        };
        let gone_from = |dir: &str| {
            before
                .keys()
                .any(|f| f.starts_with(dir) && !now.contains_key(f))
        };
        match self {
            Step::Forgetting => count(now, "snapshots/") < count(before, "snapshots/"),
            Step::Forgotten => count(now, "snapshots/") == 3,
            Step::PackWritten => new_in("data/"),
            Step::IndexWritten => new_in("index/"),
            Step::IndexRemoved => gone_from("index/"),
            Step::PackRemoved => gone_from("data/"),
        }
    }
}

/// Stops every thread of `pid` (SIGSTOP) and waits until all are stopped, so the
/// repository directory holds still while the test reads it.
fn freeze(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let running = tasks.filter_map(Result::ok).any(|task| {
            proc_state(&task.path().join("stat")).is_some_and(|state| !matches!(state, 'T' | 't'))
        });
        if !running {
            return;
        }
        assert!(Instant::now() < deadline, "drd did not stop within 20 s");
        std::thread::yield_now();
    }
}

/// Runs `drctl prune` and lets drd go in small steps, frozen between them, until the
/// repository shows `step`; then kills drd (SIGKILL) where it stands. Returns whether
/// the prune had already finished (the step came too late in it to catch).
fn prune_killed_at(daemon: &mut Daemon, step: Step, before: &BTreeMap<String, u64>) -> bool {
    let socket = daemon.socket();
    let prune = std::thread::spawn(move || drd_integration_tests::drctl(&socket, &["prune"]));
    let pid = daemon.pid();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        freeze(pid);
        if step.reached(before, &listing(&daemon.repo())) || prune.is_finished() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the prune did not reach {step:?} within 120 s"
        );
        daemon.signal(Signal::SIGCONT);
        std::thread::sleep(Duration::from_micros(200));
    }
    daemon.kill();
    prune.join().unwrap().status.success()
}

#[test]
fn a_prune_killed_at_any_point_leaves_every_kept_snapshot_restorable() {
    let mut daemon = backup_daemon(FILES_JOB);
    let count = 12;
    let ids: Vec<String> = (0..count).map(|i| backup(&daemon, i)).collect();
    let kept: Vec<(String, u64)> = (count - 3..count)
        .map(|i| (ids[i as usize].clone(), i))
        .collect();
    daemon.set_retention("files", "retention = { keep_last = 3 }");
    let pristine = daemon.dir.path().join("pristine");
    copy_tree(&daemon.repo(), &pristine);
    let before = listing(&pristine);
    let target = daemon.dir.path().join("restored");

    // A whole prune, for a start.
    let out = daemon.drctl(&["prune"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_kept_restore(&daemon, &kept, &target);
    daemon.kill();

    // Then a kill at each step, from the repository before any prune. drd runs for
    // about 0.2 ms between looks, so a step is nearly always caught before the prune
    // ends (a look may find drd a few steps further on: still a point inside the
    // prune, and the output says which); one that was not is tried again.
    for step in Step::ALL {
        let mut attempts = 0;
        loop {
            attempts += 1;
            std::fs::remove_dir_all(daemon.repo()).unwrap();
            copy_tree(&pristine, &daemon.repo());
            daemon.spawn(&[]);
            daemon.wait_ready();
            let finished = prune_killed_at(&mut daemon, step, &before);
            let files = listing(&daemon.repo());
            let count = |dir: &str| files.keys().filter(|f| f.starts_with(dir)).count();
            eprintln!(
                "kill at {step:?} (attempt {attempts}): prune {}; {} snapshots, {} index \
                 files, {} packs",
                if finished {
                    "had finished"
                } else {
                    "cut short"
                },
                count("snapshots/"),
                count("index/"),
                count("data/")
            );
            assert_kept_restore(&daemon, &kept, &target);
            if !finished {
                break;
            }
            assert!(attempts < 5, "the prune ended before {step:?} 5 times");
        }
    }

    // And a prune after all that finishes the job.
    daemon.spawn(&[]);
    daemon.wait_ready();
    let report = daemon.drctl_json(&["prune"]);
    let snapshots = report["tiers"][0]["jobs"][0]["snapshots"]
        .as_array()
        .unwrap();
    let left: Vec<&str> = snapshots
        .iter()
        .filter(|s| !s["kept_by"].as_array().unwrap().is_empty())
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), 3, "{report:#}");
    assert_kept_restore(&daemon, &kept, &target);
}

/// Pack temporaries (`data/.tmp-...`, `data/ab/.tmp-...`) in the repository.
fn pack_temporaries(repo: &Path) -> Vec<String> {
    listing(repo)
        .into_keys()
        .filter(|f| f.starts_with("data/") && f.contains("/.tmp-"))
        .collect()
}

/// A pack is written to a temporary file as it fills: a backup killed midway leaves
/// one, which no reader sees and the next prune removes (as an orphan pack).
#[test]
fn a_backup_killed_while_a_pack_fills_leaves_a_temporary_that_prune_removes() {
    let mut daemon = backup_daemon(FILES_JOB);
    let kept = backup(&daemon, 0);
    let data = daemon.dir.path().join("data");
    for i in 0..6 {
        std::fs::write(
            data.join(format!("big-{i}.bin")),
            random_bytes(500 + 2 * i, 8 << 20),
        )
        .unwrap();
    }
    let socket = daemon.socket();
    let run = std::thread::spawn(move || {
        drd_integration_tests::drctl(&socket, &["backup", "--job", "files"])
    });
    let pid = daemon.pid();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        freeze(pid);
        if !pack_temporaries(&daemon.repo()).is_empty() {
            break;
        }
        assert!(
            !run.is_finished(),
            "the backup ended before a pack was seen filling"
        );
        assert!(Instant::now() < deadline, "no pack filling within 120 s");
        daemon.signal(Signal::SIGCONT);
        std::thread::sleep(Duration::from_millis(1));
    }
    daemon.kill();
    assert!(!run.join().unwrap().status.success());
    let left = pack_temporaries(&daemon.repo());
    assert!(!left.is_empty());

    daemon.spawn(&[]);
    daemon.wait_ready();
    daemon.set_retention("files", "retention = { keep_last = 5 }");
    let report = daemon.drctl_json(&["prune"]);
    let removed = report["tiers"][0]["gc"]["orphan_packs_deleted"]
        .as_u64()
        .unwrap();
    assert!(removed >= left.len() as u64, "{report:#}");
    assert_eq!(pack_temporaries(&daemon.repo()), Vec::<String>::new());
    assert_kept_restore(&daemon, &[(kept, 0)], &daemon.dir.path().join("restored"));
}

const TWO_JOBS: &str = "[jobs.a]\ntiers = [\"local\"]\n\
                        sources = [{ kind = \"path\", path = \"{dir}/a\" }]\n\
                        [jobs.b]\ntiers = [\"local\"]\n\
                        sources = [{ kind = \"path\", path = \"{dir}/b\" }]\n";

/// A file of a backup: name, `random_bytes` seed (even: the lowest bit is ignored)
/// and size.
type FileSpec = (&'static str, u64, usize);

/// Makes `DIR/job` hold exactly `files` (others removed) and backs up `job`; returns
/// the snapshot id.
fn backup_job(daemon: &Daemon, job: &str, files: &[FileSpec]) -> String {
    let dir = daemon.dir.path().join(job);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, seed, size) in files {
        std::fs::write(dir.join(name), random_bytes(*seed, *size)).unwrap();
    }
    daemon.backup_now(job)
}

/// Offline, as on a bare machine: snapshot `id` of `job` restores to exactly `files`.
fn assert_restores_exactly(daemon: &Daemon, job: &str, id: &str, files: &[FileSpec]) {
    let into = daemon.dir.path().join("restored").join(&id[..12]);
    let out = daemon.offline_restore(id, &into);
    assert!(out.status.success(), "restore {job} {id}: {}", text(&out));
    let dir = into.join(daemon.dir.path().join(job).strip_prefix("/").unwrap());
    let expected: BTreeMap<String, u64> = files
        .iter()
        .map(|(name, _, size)| ((*name).to_owned(), *size as u64))
        .collect();
    assert_eq!(listing(&dir), expected, "files of {job} snapshot {id}");
    for (name, seed, size) in files {
        assert!(
            std::fs::read(dir.join(name)).unwrap() == random_bytes(*seed, *size),
            "{name} of {job} snapshot {id} restored wrong content"
        );
    }
}

#[test]
fn pruning_one_job_keeps_every_snapshot_of_another_job_on_the_same_tier() {
    let daemon = backup_daemon(TWO_JOBS);
    // Job a stores `shared1` first, in a pack that stays mostly used after a's prune
    // (kept whole), and `shared2` in a pack that becomes mostly garbage (rewritten);
    // job b's snapshots dedup against both, and a's newest snapshot holds neither. So
    // after a's prune only b's snapshots keep those blobs alive.
    const SHARED1: FileSpec = ("shared1.bin", 10, 1 << 20);
    const SHARED2: FileSpec = ("shared2.bin", 40, 128 << 10);
    let a0 = backup_job(&daemon, "a", &[SHARED1, ("cur.bin", 20, 128 << 10)]);
    let b0_files = [SHARED1, ("own.bin", 30, 256 << 10)];
    let b0 = backup_job(&daemon, "b", &b0_files);
    let a1 = backup_job(&daemon, "a", &[SHARED2, ("cur.bin", 22, 2 << 20)]);
    let b1_files = [SHARED1, SHARED2, ("own.bin", 32, 256 << 10)];
    let b1 = backup_job(&daemon, "b", &b1_files);
    let a2_files = [("cur.bin", 24, 128 << 10)];
    let a2 = backup_job(&daemon, "a", &a2_files);

    daemon.set_retention("a", "retention = { keep_last = 1 }");

    let report = daemon.drctl_json(&["prune", "--job", "a"]);
    let tier = &report["tiers"][0];
    let jobs: Vec<&str> = tier["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["a"], "{report:#}");
    let gone: Vec<&str> = tier["jobs"][0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kept_by"].as_array().unwrap().is_empty())
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(gone, [a1.as_str(), a0.as_str()], "{report:#}");
    // a1's pack (shared2 and 2 MiB that only a1 used) was rewritten around b's blob.
    assert!(
        tier["gc"]["packs_repacked"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    let mut left: Vec<String> = daemon
        .drctl_json(&["backups"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    left.sort();
    let mut expected = vec![a2.clone(), b0.clone(), b1.clone()];
    expected.sort();
    assert_eq!(left, expected);

    let out = daemon.offline(&["verify"], &[os("--read-data")]);
    assert!(out.status.success(), "verify: {}", text(&out));
    assert_restores_exactly(&daemon, "b", &b0, &b0_files);
    assert_restores_exactly(&daemon, "b", &b1, &b1_files);
    assert_restores_exactly(&daemon, "a", &a2, &a2_files);
}
