//! Forget and prune: data only the forgotten snapshots used is freed, everything else
//! still verifies and restores.

// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{describe, random_bytes, restored, Fixture};
use drd_repo::{PruneOptions, Retention, VerifyOptions};

fn dir_size(p: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    n
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
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    std::fs::write(fx.repo_path().join("locks/other"), lock).unwrap();
    let err = fx.repo.prune(&PruneOptions::default()).unwrap_err();
    assert!(err.to_string().contains("is locked by"), "{err}");
    std::fs::remove_file(fx.repo_path().join("locks/other")).unwrap();
    assert!(fx.repo.prune(&PruneOptions::default()).is_ok());
}
