//! Engine figures, run by hand in release mode (the comparison with restic and borg is
//! `bench/run`): `cargo run --release -p drd-repo --example engine_bench`.
//! It panics if a target is missed: an unchanged re-run of 100,000 files under 2 s, and
//! a 4 GiB sparse file backed up in bounded memory.

// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{random_bytes, restored, Fixture};
use drd_repo::VerifyOptions;

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1_048_576.0 / secs
}

/// 100,000 small files in 1,000 directories: an unchanged re-run must be well under 2 s.
fn unchanged_rerun_over_100k_files() {
    let fx = Fixture::new();
    let src = fx.mkdir("many");
    for d in 0..1000 {
        let dir = src.join(format!("d{d:04}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d} {f}")).unwrap();
        }
    }
    let first = fx.backup(&src, None);
    println!(
        "100k files: first backup {:.2?} ({} files)",
        first.elapsed, first.snapshot.stats.file_count
    );
    let second = fx.backup(&src, Some(&first.snapshot.id));
    println!("100k files: unchanged re-run {:.2?}", second.elapsed);
    assert_eq!(second.snapshot.stats.bytes_read, 0);
    assert!(second.elapsed.as_secs_f64() < 2.0);
}

/// A 200 MiB mixed corpus: random (incompressible) files, text, and zeros.
fn backup_restore_verify_throughput_on_200_mib() {
    let fx = Fixture::new();
    let src = fx.mkdir("corpus");
    let mut total = 0u64;
    for i in 0..8 {
        let data = random_bytes(10 * 1024 * 1024);
        total += data.len() as u64;
        std::fs::write(src.join(format!("random{i}.bin")), data).unwrap();
    }
    let line =
        b"2026-11-23T15:00:00Z INFO drd::backup job=critical-databases status=ok bytes=12345\n";
    for i in 0..8 {
        let mut text = Vec::with_capacity(10 * 1024 * 1024);
        let mut n = 0u64;
        while text.len() < 10 * 1024 * 1024 {
            text.extend_from_slice(line);
            text.extend_from_slice(format!("{i}-{n}\n").as_bytes());
            n += 1;
        }
        total += text.len() as u64;
        std::fs::write(src.join(format!("log{i}.txt")), text).unwrap();
    }
    let zeros = vec![0u8; 40 * 1024 * 1024];
    total += zeros.len() as u64;
    std::fs::write(src.join("zeros.img"), zeros).unwrap();
    for i in 0..2000 {
        let small = random_bytes(2048);
        total += small.len() as u64;
        std::fs::write(src.join(format!("small{i}")), small).unwrap();
    }

    let s = fx.backup(&src, None);
    let secs = s.elapsed.as_secs_f64();
    println!(
        "backup: {:.1} MiB in {secs:.2} s = {:.0} MiB/s; stored {:.1} MiB",
        total as f64 / 1_048_576.0,
        mib_per_s(total, secs),
        s.snapshot.stats.bytes_added as f64 / 1_048_576.0
    );
    let t = Instant::now();
    let target = fx.dir.path().join("restore");
    common::restore_all(&fx.repo, &s.snapshot, &target).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!("restore: {secs:.2} s = {:.0} MiB/s", mib_per_s(total, secs));
    assert!(restored(&target, &src).join("small1999").exists());
    let t = Instant::now();
    let report = fx
        .repo
        .verify(
            &VerifyOptions {
                read_data: true,
                threads: 2,
                ..VerifyOptions::default()
            },
            &mut |_| {},
        )
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(report.is_ok());
    println!(
        "verify --read-data: {secs:.2} s = {:.0} MiB/s of stored data",
        mib_per_s(s.snapshot.stats.bytes_added, secs)
    );
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// A 4 GiB sparse file with data at both ends: streamed, in bounded memory, and
/// restored sparse. It runs first, so the peak RSS is its own.
fn multi_gib_sparse_file_in_bounded_memory() {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new();
    let src = fx.mkdir("sparse");
    let path = src.join("disk.img");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&random_bytes(1024 * 1024)).unwrap();
    f.seek(SeekFrom::Start(4 * 1024 * 1024 * 1024 - 1024 * 1024))
        .unwrap();
    f.write_all(&random_bytes(1024 * 1024)).unwrap();
    drop(f);
    let before = peak_rss_mib();
    let s = fx.backup(&src, None);
    let secs = s.elapsed.as_secs_f64();
    println!(
        "4 GiB sparse: backup {secs:.2} s ({:.0} MiB/s), stored {:.1} MiB, peak RSS {} -> {} MiB",
        mib_per_s(4 * 1024 * 1024 * 1024, secs),
        s.snapshot.stats.bytes_added as f64 / 1_048_576.0,
        before,
        peak_rss_mib()
    );
    assert!(peak_rss_mib() < before + 256);
    let target = fx.dir.path().join("t");
    common::restore_all(&fx.repo, &s.snapshot, &target).unwrap();
    let m = std::fs::metadata(restored(&target, &src).join("disk.img")).unwrap();
    assert_eq!(m.len(), 4 * 1024 * 1024 * 1024);
    assert!(m.blocks() * 512 < 64 * 1024 * 1024, "{} blocks", m.blocks());
}

fn main() {
    multi_gib_sparse_file_in_bounded_memory();
    unchanged_rerun_over_100k_files();
    backup_restore_verify_throughput_on_200_mib();
}
