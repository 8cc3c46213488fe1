//! Backup and restore of real trees: every kind of entry, partial restores, picking
//! snapshots, incremental runs and failing sources.

// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{
    describe, path_plan, random_bytes, real_part_missing, restore_options, restored,
    xattrs_supported, Fixture,
};
use drd_repo::{BackupOptions, BackupPlan, Error, KeySet, Repository, RestoreOptions, Source};

/// A tree with every kind of entry the engine handles.
fn build_tree(root: &std::path::Path) -> bool {
    let mk = |rel: &[u8], data: &[u8]| {
        let p = root.join(OsStr::from_bytes(rel));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    };
    mk(b"plain.txt", b"hello world\n");
    mk(b"empty", b"");
    mk(b"dir/with space.bin", &random_bytes(3 * 1024 * 1024 + 17));
    mk(b"dir/sub/new\nline", b"newline in name");
    mk(b"dir/sub/latin1-\xe9t\xe9", b"not utf-8");
    let script = mk(b"bin/run.sh", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    let secret = mk(b"secret", b"s3cret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::create_dir_all(root.join("private")).unwrap();
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("plain.txt", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("link-dangling")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("dir/link-up")).unwrap();
    nix::unistd::mkfifo(
        &root.join("dir/pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let a = mk(b"hard/a", b"shared content");
    std::fs::hard_link(&a, root.join("hard/b")).unwrap();
    std::fs::hard_link(&a, root.join("dir/hard-c")).unwrap();
    // Sparse: 40 MiB with a little data in the middle.
    let sparse = root.join("sparse.img");
    let mut f = std::fs::File::create(&sparse).unwrap();
    f.set_len(40 * 1024 * 1024).unwrap();
    f.seek(SeekFrom::Start(10 * 1024 * 1024)).unwrap();
    f.write_all(b"data in the middle").unwrap();
    drop(f);
    let xattrs = xattrs_supported(root);
    if xattrs {
        xattr::set(root.join("plain.txt"), "user.drd.test", b"value").unwrap();
        xattr::set(root.join("dir"), "user.drd.dir", b"dir value").unwrap();
    }
    // Fixed mtimes (with nanoseconds) on everything, directories last.
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    for e in [
        "plain.txt",
        "empty",
        "dir/with space.bin",
        "secret",
        "bin/run.sh",
        "hard/a",
    ] {
        filetime::set_file_mtime(root.join(e), t).unwrap();
    }
    filetime::set_symlink_file_times(root.join("link-rel"), t, t).unwrap();
    for d in ["dir/sub", "dir", "empty-dir", "bin", "private", "hard"] {
        filetime::set_file_mtime(root.join(d), t).unwrap();
    }
    xattrs
}

#[test]
fn round_trip_of_every_kind_of_entry() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    let xattrs = build_tree(&src);
    if !xattrs {
        // The rest of the round trip still runs; only the xattrs go unchecked.
        real_part_missing(
            "user xattrs on the test filesystem",
            "the xattr round trip is not checked; run the tests on ext4, xfs or tmpfs",
        );
    }
    let summary = fx.backup(&src, None);
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    let stats = &summary.snapshot.stats;
    assert_eq!(stats.files_unchanged, 0);
    assert!(stats.file_count >= 12, "{stats:?}");

    let target = fx.dir.path().join("target");
    let r = common::restore_all(&fx.repo, &summary.snapshot, &target).unwrap();
    assert_eq!(r.symlinks, 3);
    assert_eq!(r.fifos, 1);
    let (want, want_links) = describe(&src);
    let (got, got_links) = describe(&restored(&target, &src));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (path, w) in &want {
        assert_eq!(w, &got[path], "entry {}", path.display());
    }
    assert_eq!(want_links, got_links);
    assert_eq!(got_links.len(), 1);
    assert_eq!(got_links[0].len(), 3);
    if xattrs {
        assert_eq!(got[&PathBuf::from("plain.txt")].xattrs.len(), 1);
    }
    // The sparse file is restored with holes.
    let m = std::fs::metadata(restored(&target, &src).join("sparse.img")).unwrap();
    assert_eq!(m.len(), 40 * 1024 * 1024);
    assert!(m.blocks() * 512 < 8 * 1024 * 1024, "{} blocks", m.blocks());

    // A non-empty target is refused without overwrite, accepted with it.
    let again = RestoreOptions {
        threads: 1,
        ..restore_options(&target)
    };
    assert!(matches!(
        fx.repo.restore(&summary.snapshot, &again, &mut |_| {}),
        Err(Error::TargetNotEmpty(_))
    ));
    std::fs::write(restored(&target, &src).join("plain.txt"), b"changed").unwrap();
    fx.repo
        .restore(
            &summary.snapshot,
            &RestoreOptions {
                overwrite: true,
                ..again
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(
        std::fs::read(restored(&target, &src).join("plain.txt")).unwrap(),
        b"hello world\n"
    );

    // The repository is self-describing: a fresh open with only the key file lists it.
    assert_eq!(fx.reopen().snapshots().unwrap().len(), 1);
}

#[test]
fn partial_restore_writes_only_the_chosen_paths() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    build_tree(&src);
    let snap = fx.backup(&src, None).snapshot;
    let target = fx.dir.path().join("partial");
    let wanted = src.join("dir/sub");
    fx.repo
        .restore(
            &snap,
            &RestoreOptions {
                paths: vec![wanted],
                ..restore_options(&target)
            },
            &mut |_| {},
        )
        .unwrap();
    let root = restored(&target, &src);
    assert_eq!(
        std::fs::read(root.join("dir/sub/new\nline")).unwrap(),
        b"newline in name"
    );
    assert!(!root.join("plain.txt").exists());
    assert!(!root.join("dir/with space.bin").exists());
    let top: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
    assert_eq!(top.len(), 1);

    let missing = fx.repo.restore(
        &snap,
        &RestoreOptions {
            paths: vec![src.join("no-such-thing")],
            threads: 1,
            ..restore_options(&fx.dir.path().join("t2"))
        },
        &mut |_| {},
    );
    assert!(matches!(missing, Err(Error::PathNotInSnapshot(_))));
}

#[test]
fn snapshots_are_picked_by_id_prefix_latest_and_time() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    std::fs::write(src.join("f"), b"one").unwrap();
    let s1 = fx.backup(&src, None).snapshot;
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(src.join("f"), b"two").unwrap();
    let s2 = fx.backup(&src, Some(&s1.id)).snapshot;
    assert_eq!(s2.parent.as_deref(), Some(s1.id.as_str()));

    let list = fx.repo.snapshots().unwrap();
    assert_eq!(
        list.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![s1.id.clone(), s2.id.clone()]
    );
    assert_eq!(list[0].stats.file_count, 1);
    assert_eq!(fx.repo.find_snapshot("latest").unwrap().id, s2.id);
    assert_eq!(fx.repo.find_snapshot(&s1.id[..10]).unwrap().id, s1.id);
    assert_eq!(fx.repo.latest(Some("test")).unwrap().unwrap().id, s2.id);
    assert!(fx.repo.latest(Some("other-job")).unwrap().is_none());
    let between = fx.repo.at_or_before(s2.time_ms - 1, None).unwrap().unwrap();
    assert_eq!(between.id, s1.id);
    assert_eq!(
        fx.repo.at_or_before(s2.time_ms, None).unwrap().unwrap().id,
        s2.id
    );
    assert!(fx
        .repo
        .at_or_before(s1.time_ms - 1, None)
        .unwrap()
        .is_none());
    assert!(matches!(
        fx.repo.find_snapshot("zzzz"),
        Err(Error::NoSnapshot(_))
    ));
}

#[test]
fn unchanged_second_backup_reads_no_file_data() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    build_tree(&src);
    for i in 0..200 {
        std::fs::write(src.join(format!("dir/f{i}")), format!("file {i}")).unwrap();
    }
    let first = fx.backup(&src, None).snapshot;
    let second = fx.backup(&src, Some(&first.id)).snapshot;
    let s = &second.stats;
    assert_eq!(s.bytes_read, 0, "{s:?}");
    assert_eq!(s.files_new + s.files_changed, 0, "{s:?}");
    assert_eq!(s.files_unchanged, s.file_count);
    // Nothing of the source is new. The snapshot also records the metadata of the
    // source's real ancestor folders (/tmp among them), whose times change whenever
    // another process creates a file there, as parallel tests do: their trees, one
    // small blob per level above the source, may be new, nothing else.
    let levels_above = src.components().count() - 1;
    assert!(s.blobs_added as usize <= levels_above, "{s:?}");
    assert!(s.bytes_added < 1024 * levels_above as u64, "{s:?}");
    assert_eq!(s.total_size, first.stats.total_size);
}

#[test]
fn a_five_percent_change_stores_about_five_percent() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    // Big enough that chunk granularity (512 KiB average) does not dominate.
    let size = 64 * 1024 * 1024;
    let mut data = random_bytes(size);
    std::fs::write(src.join("big.bin"), &data).unwrap();
    let first_summary = fx.backup(&src, None);
    let first_elapsed = first_summary.elapsed;
    let first = first_summary.snapshot;
    assert!(first.stats.bytes_added as usize > size, "{:?}", first.stats);
    // Overwrite 5% in two places. Each changed region also costs about one average
    // chunk (512 KiB) at either edge, so more and smaller regions cost more.
    let piece = size / 20 / 2;
    for k in 0..2 {
        let at = size / 2 * k + 12_345;
        data[at..at + piece].copy_from_slice(&random_bytes(piece));
    }
    std::fs::write(src.join("big.bin"), &data).unwrap();
    let second_summary = fx.backup(&src, Some(&first.id));
    let second = second_summary.snapshot.clone();
    let added = second.stats.bytes_added as f64 / size as f64;
    println!(
        "5% change added {:.1}% ({:?}); first backup {:?}, second {:?}",
        added * 100.0,
        second.stats,
        first_elapsed,
        second_summary.elapsed
    );
    assert!((0.03..0.12).contains(&added), "added {:.3}", added);
    assert_eq!(second.stats.files_changed, 1);
    // And it restores to the new content.
    let target = fx.dir.path().join("t");
    common::restore_all(&fx.repo, &second, &target).unwrap();
    assert!(std::fs::read(restored(&target, &src).join("big.bin")).unwrap() == data);
}

/// A reader that yields some data and then fails, like a command that exited non-zero.
struct FailingReader {
    left: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("pg_dump exited with status 1"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(7);
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn a_failing_stream_writes_no_snapshot() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    std::fs::write(src.join("f"), b"x").unwrap();
    let plan = BackupPlan {
        job: "db".into(),
        host: Some("web-1".into()),
        parent: None,
        sources: vec![
            Source::Path {
                root: src,
                excludes: vec![],
            },
            Source::Stream {
                name: "pg.dump".into(),
                reader: Box::new(FailingReader { left: 3_000_000 }),
            },
        ],
    };
    let err = fx.run(plan).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("pg.dump") && msg.contains("no snapshot"),
        "{msg}"
    );
    assert!(fx.repo.snapshots().unwrap().is_empty());
    assert!(fx
        .repo
        .verify(&Default::default(), &mut |_| {})
        .unwrap()
        .is_ok());

    // A working stream is stored as a file at the root of the snapshot.
    let plan = BackupPlan {
        job: "db".into(),
        host: Some("web-1".into()),
        parent: None,
        sources: vec![Source::Stream {
            name: "dumps/pg.dump".into(),
            reader: Box::new(std::io::Cursor::new(b"dump body".to_vec())),
        }],
    };
    let s = fx.run(plan).unwrap();
    assert_eq!(s.snapshot.host, "web-1");
    assert_eq!(s.snapshot.sources, vec!["stream:dumps/pg.dump".to_string()]);
    let target = fx.dir.path().join("t");
    common::restore_all(&fx.repo, &s.snapshot, &target).unwrap();
    assert_eq!(
        std::fs::read(target.join("dumps/pg.dump")).unwrap(),
        b"dump body"
    );
}

#[test]
fn excludes_leave_out_matching_entries() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    std::fs::create_dir_all(src.join("cache/deep")).unwrap();
    std::fs::write(src.join("cache/deep/x"), b"x").unwrap();
    std::fs::write(src.join("keep.txt"), b"k").unwrap();
    std::fs::write(src.join("skip.tmp"), b"t").unwrap();
    let plan = BackupPlan {
        job: "j".into(),
        host: None,
        parent: None,
        sources: vec![Source::Path {
            root: src,
            excludes: vec!["*.tmp".into(), "cache".into()],
        }],
    };
    let s = fx.run(plan).unwrap();
    assert_eq!(s.snapshot.stats.file_count, 1);
}

#[test]
fn a_wrong_key_is_refused_with_a_clear_message_before_anything_is_written() {
    let fx = Fixture::new();
    let other = fx.dir.path().join("other.key");
    drd_repo::generate_key_file(&other).unwrap();
    let before: Vec<_> = walkdir(&fx.repo_path());
    let err = Repository::open(
        &fx.repo_path(),
        &KeySet::load(std::slice::from_ref(&other)).unwrap(),
    )
    .unwrap_err();
    let msg = err.to_string();
    let want = format!(
        "this key does not open repository {}",
        fx.repo_path().display()
    );
    assert!(msg.starts_with(&want), "{msg}");
    assert!(!msg.contains(std::fs::read_to_string(&other).unwrap().trim()));
    assert_eq!(before, walkdir(&fx.repo_path()));
    // With the right key listed second (a rotation), it opens.
    let both = KeySet::load(&[other, fx.key_path.clone()]).unwrap();
    assert!(Repository::open(&fx.repo_path(), &both).is_ok());
}

fn walkdir(p: &std::path::Path) -> Vec<(PathBuf, u64)> {
    let (entries, _) = describe(p);
    entries.into_iter().map(|(k, v)| (k, v.size)).collect()
}

#[test]
fn a_file_that_keeps_changing_while_read_is_stored_with_a_warning() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    let busy = src.join("busy.log");
    std::fs::write(&busy, random_bytes(8 * 1024 * 1024)).unwrap();
    std::fs::write(src.join("calm"), b"calm").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let busy = busy.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&busy)
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"x").unwrap();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let summary = fx.backup(&src, None);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let w: Vec<_> = summary
        .warnings
        .iter()
        .filter(|w| w.contains("changed while it was read"))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", summary.warnings);
    assert!(w[0].contains(&busy.display().to_string()), "{}", w[0]);
    // Read twice, and stored.
    assert!(summary.snapshot.stats.bytes_read >= 16 * 1024 * 1024);
    assert_eq!(summary.snapshot.stats.file_count, 2);
}

#[test]
fn a_parent_that_was_forgotten_only_costs_a_full_read() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    std::fs::write(src.join("f"), b"content").unwrap();
    let gone = "0123456789abcdef".repeat(4);
    let s = fx.backup(&src, Some(&gone));
    assert!(
        s.warnings[0].contains("not in the repository"),
        "{:?}",
        s.warnings
    );
    assert_eq!(s.snapshot.parent, None);
    assert_eq!(s.snapshot.stats.files_new, 1);
}

/// Temporary files (`.tmp-...`) anywhere under `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            found.extend(temporaries(&entry.path()));
        } else if name.starts_with(".tmp-") {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

/// More files than the read-ahead runs ahead, so it is waiting on the walk when the
/// run is cancelled; a FIFO it must not open.
#[test]
fn a_cancelled_backup_stops_writes_no_snapshot_and_the_next_one_is_complete() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    for d in 0..30 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d} {f}")).unwrap();
        }
    }
    nix::unistd::mkfifo(&src.join("d00/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let plan = || path_plan("test", &src);
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = BackupOptions {
        cancel: Some(cancel.clone()),
        progress_interval: std::time::Duration::ZERO,
        ..BackupOptions::default()
    };
    let result = fx.repo.backup(plan(), &options, &mut |p| {
        if p.files_done >= 200 {
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(fx.repo.snapshots().unwrap().is_empty());
    // The pack that was filling (written as it filled) is gone, not left as a temporary.
    assert_eq!(
        temporaries(&fx.dir.path().join("repo")),
        Vec::<String>::new()
    );

    let summary = fx.run(plan()).unwrap();
    // The FIFO is backed up (not opened) and made again by the restore.
    assert_eq!(summary.snapshot.stats.file_count, 3001);
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    let target = fx.dir.path().join("restore");
    common::restore_all(&fx.repo, &summary.snapshot, &target).unwrap();
    let back = restored(&target, &src);
    assert_eq!(
        std::fs::read_to_string(back.join("d29/f099")).unwrap(),
        "29 99"
    );
    let fifo = std::fs::symlink_metadata(back.join("d00/fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    assert_eq!(fifo.mode() & 0o7777, 0o700);
}

/// Files are read by several threads while the walk goes on; the trees must come out as
/// one reader makes them, also when the walk runs far ahead of a large file (more
/// closed folders than it may keep waiting) and hardlinks span folders.
#[test]
fn files_read_in_parallel_make_the_same_snapshot_as_one_reader() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    for d in 0..1100 {
        let dir = src.join(format!("d{d:04}/inner"));
        std::fs::create_dir_all(&dir).unwrap();
        if d == 0 {
            // The first folder to close after its subfolder waits for this one.
            std::fs::write(src.join("d0000/0-big"), random_bytes(12 * 1024 * 1024)).unwrap();
        }
        std::fs::write(dir.join("a"), format!("a {d}")).unwrap();
        std::fs::write(dir.join("b"), format!("b {}", d % 7)).unwrap();
    }
    std::fs::hard_link(src.join("d0003/inner/a"), src.join("d1000/inner/link")).unwrap();
    std::fs::hard_link(src.join("d0005/inner/a"), src.join("d0005/inner/same-dir")).unwrap();
    let with = |threads: usize| {
        let options = BackupOptions {
            threads,
            ..BackupOptions::default()
        };
        fx.repo
            .backup(path_plan("test", &src), &options, &mut |_| {})
            .unwrap()
    };
    let parallel = with(4);
    assert!(parallel.warnings.is_empty(), "{:?}", parallel.warnings);
    assert_eq!(parallel.snapshot.stats.file_count, 2203);
    let target = fx.dir.path().join("target");
    common::restore_all(&fx.repo, &parallel.snapshot, &target).unwrap();
    let (want, want_links) = describe(&src);
    let (got, got_links) = describe(&restored(&target, &src));
    assert_eq!(want, got);
    assert_eq!(want_links, got_links);
    assert_eq!(got_links.len(), 2, "{got_links:?}");

    // One reader, no parent: every tree of the source is already there (only the
    // folders above it, whose times other tests change, may be new).
    let serial = with(1).snapshot.stats;
    let levels_above = src.components().count() - 1;
    assert!(serial.blobs_added as usize <= levels_above, "{serial:?}");
    assert_eq!(serial.bytes_read, parallel.snapshot.stats.bytes_read);
}
