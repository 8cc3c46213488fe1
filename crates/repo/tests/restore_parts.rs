//! A large file is restored by every writer thread at once, each writing a run of its
//! blobs at its offset: it comes back byte for byte, with holes where it had zeros
//! (a trailing one too), with its mtime set after the last write, and a part that
//! cannot be read leaves `NAME.damaged` with every readable part in place.

// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{describe, random_bytes, restore_options, restored, Fixture};
use drd_repo::RestoreOptions;

const MIB: usize = 1 << 20;

/// 48 MiB: data, zeros, data, and zeros to the end. Large enough to be cut into parts
/// (at 16 MiB each), with a hole inside a part and one at the file's end.
fn large_file(path: &Path) -> Vec<u8> {
    let mut content = random_bytes(12 * MIB);
    content.resize(20 * MIB, 0);
    content.extend(random_bytes(20 * MIB));
    content.resize(48 * MIB, 0);
    std::fs::write(path, &content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let old = filetime::FileTime::from_unix_time(1_500_000_000, 123_000_000);
    filetime::set_file_mtime(path, old).unwrap();
    content
}

fn four_threads(target: &Path) -> RestoreOptions {
    RestoreOptions {
        threads: 4,
        ..restore_options(target)
    }
}

#[test]
fn a_large_file_written_by_four_threads_comes_back_exactly_and_sparse() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    large_file(&src.join("disk.img"));
    std::fs::write(src.join("small"), b"beside it").unwrap();
    let snap = fx.backup(&src, None).snapshot;

    let target = fx.dir.path().join("t");
    let summary = fx
        .repo
        .restore(&snap, &four_threads(&target), &mut |_| {})
        .unwrap();
    assert!(summary.damaged.is_empty(), "{:?}", summary.damaged);
    // Content, size, mode and mtime (set after every part was written) all match.
    assert_eq!(describe(&src), describe(&restored(&target, &src)));
    // Holes are kept by whole blobs: the blob that holds the end of a data run also
    // holds up to 4 MiB (the largest chunk) of the zeros after it.
    let meta = std::fs::metadata(restored(&target, &src).join("disk.img")).unwrap();
    assert!(
        meta.blocks() * 512 <= 40 * MIB as u64,
        "the 16 MiB of zeros were written, not left as holes: {} bytes allocated",
        meta.blocks() * 512
    );
}

#[test]
fn a_damaged_part_of_a_large_file_leaves_the_other_parts_in_a_damaged_copy() {
    let fx = Fixture::new();
    let src = fx.mkdir("src");
    let content = large_file(&src.join("disk.img"));
    let snap = fx.backup(&src, None).snapshot;
    let in_snapshot = format!("{}/disk.img", src.display());
    let blobs = fx.repo.file_blobs(&snap, &in_snapshot).unwrap();
    // A blob in the second run of data, written by a part other than the first.
    let victim = &blobs[blobs.len() * 3 / 5];
    common::flip_byte_in_blob(&fx.repo, victim, 0x40);

    let target = fx.dir.path().join("t");
    let summary = fx
        .repo
        .restore(&snap, &four_threads(&target), &mut |_| {})
        .unwrap();
    assert_eq!(summary.damaged.len(), 1, "{:?}", summary.damaged);
    let damaged = &summary.damaged[0];
    assert_eq!(damaged.path, in_snapshot);
    let real = restored(&target, &src).join("disk.img");
    assert!(!real.exists(), "the real name holds a file with a hole");
    let kept = real.with_file_name("disk.img.damaged");
    assert_eq!(damaged.kept_as.as_deref(), Some(kept.as_path()));

    // Everything but one blob's worth of bytes is back, at the right offsets; the
    // unreadable blob is a hole (zeros), and the file has its full length and mtime.
    let got = std::fs::read(&kept).unwrap();
    assert_eq!(got.len(), content.len());
    let first = got.iter().zip(&content).position(|(a, b)| a != b).unwrap();
    let last = got.len()
        - 1
        - got
            .iter()
            .rev()
            .zip(content.iter().rev())
            .position(|(a, b)| a != b)
            .unwrap();
    assert!(
        last - first < 4 * MIB,
        "bytes {first}..={last} differ: more than the one damaged blob"
    );
    assert!(got[first..=last].iter().all(|b| *b == 0));
    let meta = std::fs::metadata(&kept).unwrap();
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_500_000_000, 123_000_000)
    );
    assert_eq!(meta.mode() & 0o7777, 0o640);
}
