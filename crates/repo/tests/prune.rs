//! Forget and prune: data only the forgotten snapshots used is freed, everything else
//! still verifies and restores.

// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    describe, files_under, flip_middle_byte, path_plan, random_bytes, read_data, restore_all,
    restored, unix_ms_now, Fixture,
};
use drd_repo::{BackupOptions, PruneOptions, Repository, Retention, VerifyOptions};

fn dir_size(p: &std::path::Path) -> u64 {
    files_under(p)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

#[test]
fn prune_frees_what_only_forgotten_snapshots_used() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    std::fs::write(src.join("old"), random_bytes(3 * 1024 * 1024)).unwrap();
    std::fs::write(src.join("keep"), random_bytes(1024 * 1024)).unwrap();
    let s1 = fx.backup(&src, None).snapshot;
    std::fs::remove_file(src.join("old")).unwrap();
    std::fs::write(src.join("new"), random_bytes(512 * 1024)).unwrap();
    let s2 = fx.backup(&src, Some(&s1.id)).snapshot;
    let data = fx.repo_path().join("data");
    let before = dir_size(&data);

    let policy = Retention {
        keep_last: 1,
        ..Retention::default()
    };
    let dry = fx.repo.forget(&policy, None, true).unwrap();
    assert_eq!(dry.removed, vec![s1.id.clone()]);
    assert_eq!(fx.repo.snapshots().unwrap().len(), 2);
    let forgot = fx.repo.forget(&policy, Some("test"), false).unwrap();
    assert_eq!(forgot.removed, vec![s1.id]);
    assert_eq!(fx.repo.snapshots().unwrap().len(), 1);

    let dry = fx
        .repo
        .prune(&PruneOptions {
            dry_run: true,
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(dir_size(&data), before);
    let summary = fx.repo.prune(&PruneOptions::default()).unwrap();
    assert!(
        summary.bytes_freed.abs_diff(dry.bytes_freed) < 64 * 1024,
        "{dry:?}"
    );
    let after = dir_size(&data);
    println!("prune: {summary:?}, data {before} -> {after}");
    assert!(
        summary.packs_repacked + summary.packs_deleted >= 1,
        "{summary:?}"
    );
    assert!(before - after > 2 * 1024 * 1024, "{before} -> {after}");

    let report = fx
        .repo
        .verify(
            &VerifyOptions {
                read_data: true,
                ..VerifyOptions::default()
            },
            &mut |_| {},
        )
        .unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert!(report.reclaimable_packs.is_empty());
    let target = fx.dir.path().join("t");
    common::restore_all(&fx.repo, &s2, &target).unwrap();
    assert_eq!(describe(&src).0, describe(&restored(&target, &src)).0);

    // A second prune has nothing to do, and the next backup still dedups.
    let again = fx.repo.prune(&PruneOptions::default()).unwrap();
    assert_eq!(again.bytes_freed, 0, "{again:?}");
    let s3 = fx.backup(&src, Some(&s2.id)).snapshot;
    // (Only the ancestor trees are new: the restore above changed the temp dir's mtime.)
    assert_eq!(s3.stats.bytes_read, 0, "{:?}", s3.stats);
    assert!(s3.stats.bytes_added < 4096, "{:?}", s3.stats);
}

/// Two handles on one repository, as two processes. Each operation reads only the index
/// files that are new since the handle's last one, so what one handle stored the other
/// dedups against; but once one has pruned data away, the other must store it again,
/// not point at a pack that is gone.
#[test]
fn a_second_handle_sees_what_another_stored_and_what_it_pruned() {
    let fx = Fixture::new();
    let other = Repository::open(&fx.repo_path(), &fx.keys).unwrap();
    let by_other = |src: &std::path::Path| {
        other
            .backup(
                path_plan("test", src),
                &BackupOptions::default(),
                &mut |_| {},
            )
            .unwrap()
    };
    let src = fx.mkdir("src");
    let content = random_bytes(3 * 1024 * 1024);
    std::fs::write(src.join("a"), &content).unwrap();
    fx.backup(&src, None);
    let second = by_other(&src);
    assert!(
        second.snapshot.stats.bytes_added < 64 * 1024,
        "the other handle stored the data again: {:?}",
        second.snapshot.stats
    );

    // Only a small file left, and only its snapshot kept: the data of "a" is pruned.
    std::fs::remove_file(src.join("a")).unwrap();
    std::fs::write(src.join("b"), b"small").unwrap();
    fx.backup(&src, None);
    let last = Retention {
        keep_last: 1,
        ..Retention::default()
    };
    fx.repo.forget(&last, None, false).unwrap();
    let pruned = fx.repo.prune(&PruneOptions::default()).unwrap();
    assert!(pruned.bytes_freed >= content.len() as u64, "{pruned:?}");

    std::fs::write(src.join("a"), &content).unwrap();
    let again = by_other(&src);
    assert!(
        again.snapshot.stats.bytes_added >= content.len() as u64,
        "the other handle pointed at pruned data: {:?}",
        again.snapshot.stats
    );
    let report = fx.reopen().verify(&read_data(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report:?}");
    let target = fx.dir.path().join("restore");
    restore_all(&fx.reopen(), &again.snapshot, &target).unwrap();
    assert_eq!(
        std::fs::read(restored(&target, &src).join("a")).unwrap(),
        content
    );
}

#[test]
fn prune_waits_for_no_one_and_refuses_while_a_backup_holds_the_lock() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    std::fs::write(src.join("f"), b"x").unwrap();
    fx.backup(&src, None);
    // A live shared lock of another process on this host (our parent: alive).
    let lock = format!(
        r#"{{"host":"{}","pid":{},"exclusive":false,"started_ms":0,"heartbeat_ms":{},"lease_ms":600000}}"#,
        drd_repo::hostname(),
        std::os::unix::process::parent_id(),
        unix_ms_now()
    );
    std::fs::write(fx.repo_path().join("locks/other"), lock).unwrap();
    let err = fx.repo.prune(&PruneOptions::default()).unwrap_err();
    assert!(err.to_string().contains("is locked by"), "{err}");
    std::fs::remove_file(fx.repo_path().join("locks/other")).unwrap();
    assert!(fx.repo.prune(&PruneOptions::default()).is_ok());
}

/// Flips one byte in the middle of snapshot `id`'s file; returns the intact bytes.
fn damage_snapshot(fx: &Fixture, id: &str) -> Vec<u8> {
    flip_middle_byte(&fx.repo_path().join("snapshots").join(id), 0x5a)
}

#[test]
fn a_damaged_snapshot_is_listed_left_alone_by_retention_and_keeps_its_data() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    let mut ids = Vec::new();
    for i in 0..3 {
        std::fs::write(src.join("cur"), random_bytes(512 * 1024 + i)).unwrap();
        ids.push(fx.backup(&src, None).snapshot.id);
    }
    let intact = damage_snapshot(&fx, &ids[1]);

    let list = fx.repo.snapshot_list().unwrap();
    assert_eq!(list.snapshots.len(), 2);
    assert_eq!(list.damaged.len(), 1);
    assert_eq!(list.damaged[0].id, ids[1]);
    assert!(list.damaged[0].reason.contains("does not decrypt"));
    assert!(list.damaged[0].written_ms.is_some());
    let err = fx.repo.find_snapshot(&ids[1][..10]).unwrap_err();
    assert!(
        matches!(err, drd_repo::Error::Corrupt { .. }) && err.to_string().contains("damaged"),
        "{err}"
    );

    let policy = Retention {
        keep_last: 1,
        ..Retention::default()
    };
    let forgot = fx.repo.forget(&policy, None, false).unwrap();
    assert_eq!(forgot.removed, vec![ids[0].clone()], "the rest went on");
    assert_eq!(forgot.damaged, vec![ids[1].clone()]);
    assert!(forgot.warnings[0].contains(&ids[1]), "{forgot:?}");
    let file = fx.repo_path().join("snapshots").join(&ids[1]);
    assert!(file.exists(), "a damaged file is evidence: never removed");

    let data = fx.repo_path().join("data");
    let before = dir_size(&data);
    let summary = fx.repo.prune(&PruneOptions::default()).unwrap();
    assert!(
        summary
            .skipped
            .as_deref()
            .is_some_and(|s| s.contains(&ids[1])),
        "{summary:?}"
    );
    assert_eq!(
        dir_size(&data),
        before,
        "nothing deleted while B's tree is unknown"
    );

    // With the intact file back, B restores, and the next prune collects A's data.
    std::fs::write(&file, &intact).unwrap();
    let b = fx.repo.find_snapshot(&ids[1]).unwrap();
    common::restore_all(&fx.repo, &b, &fx.dir.path().join("b")).unwrap();
    let summary = fx.repo.prune(&PruneOptions::default()).unwrap();
    assert!(
        summary.skipped.is_none() && summary.bytes_freed > 0,
        "{summary:?}"
    );
}

#[test]
fn prune_reads_a_damaged_snapshot_from_an_intact_replica_copy() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    let mut ids = Vec::new();
    for i in 0..3 {
        std::fs::write(src.join("cur"), random_bytes(512 * 1024 + i)).unwrap();
        ids.push(fx.backup(&src, None).snapshot.id);
    }
    let replica_dir = fx.dir.path().join("replica");
    let replica: std::sync::Arc<dyn drd_repo::Storage> =
        std::sync::Arc::new(drd_repo::LocalDir::new(&replica_dir));
    fx.repo.replicate_to(&replica, &mut |_| {}).unwrap();
    damage_snapshot(&fx, &ids[1]);
    let repo = Repository::open(&fx.repo_path(), &fx.keys)
        .unwrap()
        .with_fallback(replica);
    let (copy, path) = repo.intact_copy(&ids[1]).unwrap();
    assert_eq!(copy.id, ids[1]);
    assert!(path.starts_with(&replica_dir));

    let policy = Retention {
        keep_last: 1,
        ..Retention::default()
    };
    repo.forget(&policy, None, false).unwrap();
    let summary = repo.prune(&PruneOptions::default()).unwrap();
    assert!(summary.skipped.is_none(), "{summary:?}");
    assert!(summary.bytes_freed > 0, "A's data went: {summary:?}");
    // B's data stayed: it restores from the copy's snapshot file.
    common::restore_all(&repo, &copy, &fx.dir.path().join("b")).unwrap();
}

#[test]
fn a_damaged_blob_is_read_from_a_replica_whose_own_prune_rewrote_its_pack() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    let keep = random_bytes(256 * 1024);
    std::fs::write(src.join("keep"), &keep).unwrap();
    std::fs::write(src.join("old"), random_bytes(2 * 1024 * 1024)).unwrap();
    fx.backup(&src, None);
    std::fs::remove_file(src.join("old")).unwrap();
    std::fs::write(src.join("new"), random_bytes(128 * 1024)).unwrap();
    let latest = fx.backup(&src, None).snapshot;
    let replica_dir = fx.dir.path().join("replica");
    let replica: std::sync::Arc<dyn drd_repo::Storage> =
        std::sync::Arc::new(drd_repo::LocalDir::new(&replica_dir));
    fx.repo.replicate_to(&replica, &mut |_| {}).unwrap();

    // Only the copy is pruned: the pack holding `keep` and `old` is mostly garbage
    // there and is rewritten under a new name, while the primary keeps it whole.
    let copy = Repository::open(&replica_dir, &fx.keys).unwrap();
    let policy = Retention {
        keep_last: 1,
        ..Retention::default()
    };
    copy.forget(&policy, None, false).unwrap();
    let summary = copy.prune(&PruneOptions::default()).unwrap();
    assert!(summary.packs_repacked >= 1, "{summary:?}");

    let repo = Repository::open(&fx.repo_path(), &fx.keys)
        .unwrap()
        .with_fallback(replica);
    let blobs = repo
        .file_blobs(&latest, src.join("keep").to_str().unwrap())
        .unwrap();
    assert!(!blobs.is_empty());
    for id in &blobs {
        let (pack, _, _) = repo.blob_location(id).unwrap();
        assert!(
            !replica_dir
                .join(pack.strip_prefix(fx.repo_path()).unwrap())
                .exists(),
            "the copy still holds {}",
            pack.display()
        );
        common::flip_byte_in_blob(&repo, id, 0x01);
    }
    let target = fx.dir.path().join("out");
    let summary = common::restore_all(&repo, &latest, &target).unwrap();
    assert!(summary.damaged.is_empty(), "{:?}", summary.damaged);
    assert!(std::fs::read(restored(&target, &src).join("keep")).unwrap() == keep);
}

/// A landing repository whose snapshot 1 (`keep/keep` and a 2 MiB `old`) is forgotten
/// and whose snapshot 2 (`keep/keep` and `new`) still needs the tree of `keep/`, which
/// did not change, so it lies in snapshot 1's pack: the pack that a prune on a copy
/// rewrites (it is mostly `old`). Returns the fixture, the source and snapshot 2.
fn landing_with_a_shared_tree() -> (common::Fixture, std::path::PathBuf, drd_repo::Snapshot) {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    std::fs::create_dir(src.join("keep")).unwrap();
    std::fs::write(src.join("keep/keep"), random_bytes(256 * 1024)).unwrap();
    std::fs::write(src.join("old"), random_bytes(2 * 1024 * 1024)).unwrap();
    fx.backup(&src, None);
    std::fs::remove_file(src.join("old")).unwrap();
    std::fs::write(src.join("new"), random_bytes(128 * 1024)).unwrap();
    let latest = fx.backup(&src, None).snapshot;
    (fx, src, latest)
}

/// A copy of the landing repository in `dir`, pruned to its newest snapshot there:
/// snapshot 1's pack is rewritten under a new name (a new one on every call).
fn repacked_copy(fx: &Fixture, dir: &std::path::Path) {
    let storage: std::sync::Arc<dyn drd_repo::Storage> =
        std::sync::Arc::new(drd_repo::LocalDir::new(dir));
    fx.repo.replicate_to(&storage, &mut |_| {}).unwrap();
    let copy = Repository::open(dir, &fx.keys).unwrap();
    copy.forget(&keep_last_one(), None, false).unwrap();
    let summary = copy.prune(&PruneOptions::default()).unwrap();
    assert_eq!(summary.packs_repacked, 1, "{summary:?}");
}

fn keep_last_one() -> Retention {
    Retention {
        keep_last: 1,
        ..Retention::default()
    }
}

/// Damages every blob of the landing pack that holds `keep/keep` (and the tree of
/// `keep/`): flips a bit in every 16th byte.
fn damage_pack_of(fx: &Fixture, latest: &drd_repo::Snapshot, src: &std::path::Path) {
    let blobs = fx
        .repo
        .file_blobs(latest, src.join("keep/keep").to_str().unwrap())
        .unwrap();
    let (pack, _, _) = fx.repo.blob_location(&blobs[0]).unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    for b in bytes.iter_mut().step_by(16) {
        *b ^= 0x01;
    }
    std::fs::write(&pack, bytes).unwrap();
}

/// Prune keeping snapshot 1's pack whole (so only the mark phase reads it).
fn prune_keeping_packs() -> PruneOptions {
    PruneOptions {
        repack_threshold: 1.0,
        ..PruneOptions::default()
    }
}

#[test]
fn a_prune_reads_a_damaged_tree_from_a_copy_whose_prune_rewrote_its_pack() {
    let (fx, src, latest) = landing_with_a_shared_tree();
    let copy_dir = fx.dir.path().join("copy");
    repacked_copy(&fx, &copy_dir);
    fx.repo.forget(&keep_last_one(), None, false).unwrap();
    damage_pack_of(&fx, &latest, &src);

    // The mark phase reads the tree of `keep/` (damaged here, under another pack name
    // and offset on the copy) through `read_blob`: without the copy's own index the
    // prune stops, since it cannot tell what the snapshot uses.
    let repo = Repository::open(&fx.repo_path(), &fx.keys)
        .unwrap()
        .with_fallback(std::sync::Arc::new(drd_repo::LocalDir::new(&copy_dir)));
    let summary = repo.prune(&prune_keeping_packs()).unwrap();
    assert!(summary.skipped.is_none(), "{summary:?}");
    assert_eq!(summary.packs_deleted, 0, "{summary:?}");

    let target = fx.dir.path().join("out");
    let restored_files = common::restore_all(&repo, &latest, &target).unwrap();
    assert!(
        restored_files.damaged.is_empty(),
        "{:?}",
        restored_files.damaged
    );
    let (expected, _) = describe(&src);
    let (got, _) = describe(&restored(&target, &src));
    assert!(got == expected, "the restore differs from the source");
}

#[test]
fn the_next_operation_reads_a_copy_that_was_repacked_again_since_the_last() {
    let (fx, src, latest) = landing_with_a_shared_tree();
    let copy_dir = fx.dir.path().join("copy");
    let other_dir = fx.dir.path().join("other");
    repacked_copy(&fx, &copy_dir);
    repacked_copy(&fx, &other_dir);
    let packs = |dir: &std::path::Path| {
        let mut names = drd_repo::Storage::list(&drd_repo::LocalDir::new(dir), "data").unwrap();
        names.sort();
        names
    };
    assert_ne!(packs(&copy_dir), packs(&other_dir));
    fx.repo.forget(&keep_last_one(), None, false).unwrap();
    damage_pack_of(&fx, &latest, &src);
    let repo = Repository::open(&fx.repo_path(), &fx.keys)
        .unwrap()
        .with_fallback(std::sync::Arc::new(drd_repo::LocalDir::new(&copy_dir)));
    assert!(repo
        .prune(&prune_keeping_packs())
        .unwrap()
        .skipped
        .is_none());

    // A sync tool puts another copy in its place, whose pack of `keep/` has another
    // name (the same repository, pruned on its own): the open repository's next
    // operation must look in the copy's index as it is now.
    std::fs::remove_dir_all(&copy_dir).unwrap();
    std::fs::rename(&other_dir, &copy_dir).unwrap();
    assert!(repo
        .prune(&prune_keeping_packs())
        .unwrap()
        .skipped
        .is_none());
}
