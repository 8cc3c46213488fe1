//! A damaged or lost index file: the repository still opens, lists, restores and
//! verifies (the pack headers stand in for it, and verify reports it in a whole
//! report), prune refuses to guess, and `repair_index` rebuilds the index.

// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::{
    describe, flip_byte, index_files, random_bytes, read_data, restore_all, restored, Fixture,
};
use drd_repo::{Error, Problem, PruneOptions, Repository, VerifyOptions};

/// Two backups (two index files) of different data; returns the two sources.
fn two_backups(fx: &Fixture) -> (PathBuf, PathBuf) {
    let first = fx.mkdir("first");
    std::fs::write(first.join("a.bin"), random_bytes(300_000)).unwrap();
    std::fs::write(first.join("small"), b"first").unwrap();
    fx.backup(&first, None);
    let second = fx.mkdir("second");
    std::fs::write(second.join("b.bin"), random_bytes(200_000)).unwrap();
    fx.backup(&second, None);
    (first, second)
}

#[test]
fn a_flipped_index_byte_is_skipped_and_restore_and_verify_go_on() {
    let fx = Fixture::new();
    let (first, second) = two_backups(&fx);
    let files = index_files(&fx.repo_path());
    assert_eq!(files.len(), 2);
    for f in &files {
        flip_byte(f, 50, 0x01);
    }

    // A fresh open, as on a bare machine: no error, the damage named with the fix.
    let repo = fx.reopen();
    let warnings = repo.index_warnings().join("\n");
    assert!(
        warnings.contains(&files[0].display().to_string()) && warnings.contains("repair index"),
        "{warnings}"
    );
    let snapshots = repo.snapshots().unwrap();
    assert_eq!(snapshots.len(), 2);
    for (i, (snap, source)) in snapshots.iter().zip([&first, &second]).enumerate() {
        let target = fx.dir.path().join(format!("restored-{i}"));
        restore_all(&repo, snap, &target).unwrap();
        assert_eq!(describe(source), describe(&restored(&target, source)));
    }

    // Verify gives its whole report: the two index files, nothing else, and the packs
    // they listed are checked, not called reclaimable.
    let report = repo.verify(&read_data(), &mut |_| {}).unwrap();
    assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
    assert!(report
        .problems
        .iter()
        .all(|p| matches!(p, Problem::BadIndex { .. })));
    assert!(report.problems[0].to_string().contains("repair index"));
    assert_eq!(report.snapshots_checked, 2);
    assert!(
        report.blobs_read > 0 && report.packs_read >= 2,
        "{report:?}"
    );
    assert!(report.reclaimable_packs.is_empty(), "{report:?}");

    // Prune needs the whole index: it stops, names the fix and removes nothing.
    let err = repo.prune(&PruneOptions::default()).unwrap_err();
    assert!(matches!(err, Error::DamagedIndex { .. }), "{err}");
    assert!(err.to_string().contains("repair index"), "{err}");
    assert_eq!(index_files(&fx.repo_path()), files);

    // A backup meanwhile does not lean on blobs only the damaged files listed.
    std::fs::write(first.join("new"), b"after the damage").unwrap();
    let third = fx.backup(&first, None).snapshot;
    // (Were the damaged files then lost, the new snapshot would still be whole.)
    let copy = fx.dir.path().join("copy");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(fx.repo_path())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    for f in &files {
        std::fs::remove_file(copy.join("index").join(f.file_name().unwrap())).unwrap();
    }
    let report = Repository::open(&copy, &fx.keys)
        .unwrap()
        .verify(&VerifyOptions::default(), &mut |_| {})
        .unwrap();
    for p in &report.problems {
        if let Problem::MissingBlob { affected, .. } = p {
            assert!(
                affected.iter().all(|a| a.snapshot != third.id),
                "the new snapshot needs a blob only a damaged index listed: {p}"
            );
        }
    }

    let summary = repo.repair_index().unwrap();
    assert_eq!(summary.index_files_removed.len(), 2, "{summary:?}");
    assert!(summary.packs_indexed >= 2, "{summary:?}");
    assert!(summary.index_file_written.is_some(), "{summary:?}");
    assert!(summary.unreadable_packs.is_empty(), "{summary:?}");
    assert!(files.iter().all(|f| !f.exists()));

    let repo = fx.reopen();
    assert!(repo.index_warnings().is_empty());
    let report = repo.verify(&read_data(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert!(report.reclaimable_packs.is_empty(), "{report:?}");
    let target = fx.dir.path().join("restored-third");
    restore_all(&repo, &third, &target).unwrap();
    assert_eq!(describe(&first), describe(&restored(&target, &first)));
    repo.prune(&PruneOptions::default()).unwrap();
    assert!(repo.verify(&read_data(), &mut |_| {}).unwrap().is_ok());
    assert!(repo.repair_index().unwrap().is_noop());
}

#[test]
fn a_lost_index_file_is_rebuilt_from_the_pack_headers() {
    let fx = Fixture::new();
    let (first, _) = two_backups(&fx);
    let files = index_files(&fx.repo_path());
    std::fs::remove_file(&files[0]).unwrap();
    let repo = fx.reopen();
    let report = repo.verify(&read_data(), &mut |_| {}).unwrap();
    assert!(!report.is_ok(), "a lost index file went unseen");

    let summary = repo.repair_index().unwrap();
    assert!(summary.packs_indexed >= 1, "{summary:?}");
    assert!(summary.index_files_removed.is_empty(), "{summary:?}");
    let report = repo.verify(&read_data(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    let snap = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .find(|s| s.sources.iter().any(|src| src.contains("first")))
        .unwrap();
    let target = fx.dir.path().join("restored");
    restore_all(&repo, &snap, &target).unwrap();
    assert_eq!(describe(&first), describe(&restored(&target, &first)));
}

#[test]
fn a_pack_with_a_damaged_header_and_no_readable_index_is_damage_not_reclaimable() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    std::fs::write(src.join("f"), random_bytes(100_000)).unwrap();
    let snap = fx.backup(&src, None).snapshot;
    let pack = fx.pack_of_first_blob(&snap, &src.join("f"));
    let len = std::fs::metadata(&pack).unwrap().len() as usize;
    flip_byte(&pack, len - 20, 0x01);
    for f in index_files(&fx.repo_path()) {
        flip_byte(&f, 50, 0x01);
    }

    let repo = fx.reopen();
    let report = repo.verify(&VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report
        .problems
        .iter()
        .any(|p| matches!(p, Problem::BadIndex { .. })));
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::BadPackHeader { pack: p, .. } if *p == pack.display().to_string())),
        "{:#?}",
        report.problems
    );
    assert!(report.reclaimable_packs.is_empty(), "{report:?}");

    let summary = repo.repair_index().unwrap();
    assert_eq!(summary.unreadable_packs.len(), 1, "{summary:?}");
    assert!(pack.exists(), "repair must not remove a pack");
}
