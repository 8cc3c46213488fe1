//! A file over 4 GiB: a sparse 5 GiB file with 1 MiB of random data at its start,
//! just below the 4 GiB mark, just above it and at its end goes through `drctl backup`
//! and `drctl restore` and comes back byte for byte, and sparse: an offset or length
//! kept in 32 bits anywhere on the way would move or lose the data past the mark, and
//! a restore that writes zeros instead of holes would allocate all 5 GiB.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Instant;

use drd_integration_tests::{
    backup_daemon, random_bytes, restore_args, test_seed, text, FILES_JOB,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const SIZE: u64 = 5 * GIB;

/// Where the data is: 1 MiB at each offset (unaligned ones, so no block or chunk
/// boundary lines up with the data by chance); the rest is a hole.
const REGIONS: [u64; 4] = [0, 4 * GIB - MIB - 4097, 4 * GIB + 4097, SIZE - MIB];

/// The seed of region `i`'s data. `random_bytes` uses `seed | 1`, so seeds 2 apart give
/// different regions (a region written at another's place would show).
fn region_seed(seed: u64, i: usize) -> u64 {
    seed.wrapping_add(2 * i as u64)
}

/// Compares two files block by block (8 MiB in memory at a time); panics at the first
/// block that differs, naming its offset.
fn assert_same_content(a: &Path, b: &Path) {
    const BLOCK: usize = 4 << 20;
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
    let mut offset = 0u64;
    loop {
        let n = fill(&mut fa, &mut ba);
        let m = fill(&mut fb, &mut bb);
        assert_eq!(
            n,
            m,
            "{} and {} end at different offsets",
            a.display(),
            b.display()
        );
        if n == 0 {
            return;
        }
        if ba[..n] != bb[..n] {
            let at = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap();
            panic!(
                "{} differs from {} at offset {}",
                b.display(),
                a.display(),
                offset + at as u64
            );
        }
        offset += n as u64;
    }
}

/// Reads until `buf` is full or the file ends.
fn fill(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

#[test]
fn a_sparse_five_gib_file_round_trips_exactly_and_sparse() {
    let daemon = backup_daemon(FILES_JOB);
    let data = daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let source = data.join("big.img");
    let seed = test_seed();
    let f = File::create(&source).unwrap();
    f.set_len(SIZE).unwrap();
    for (i, at) in REGIONS.iter().enumerate() {
        f.write_all_at(&random_bytes(region_seed(seed, i), MIB as usize), *at)
            .unwrap();
    }
    drop(f);
    let allocated = std::fs::metadata(&source).unwrap().blocks() * 512;
    assert!(
        allocated < 64 * MIB,
        "the source is not sparse ({allocated} bytes allocated): the filesystem of {} \
         does not keep holes",
        data.display()
    );

    let started = Instant::now();
    let id = daemon.backup_now("files");
    eprintln!(
        "backup of the 5 GiB sparse file took {:?}",
        started.elapsed()
    );

    let target = daemon.dir.path().join("restored");
    let started = Instant::now();
    let out = daemon.drctl(&restore_args(&id, &target));
    assert!(out.status.success(), "{}", text(&out));
    eprintln!(
        "restore of the 5 GiB sparse file took {:?}",
        started.elapsed()
    );
    let restored = target.join(data.strip_prefix("/").unwrap()).join("big.img");

    let meta = std::fs::metadata(&restored).unwrap();
    assert_eq!(meta.len(), SIZE);
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        {
            let m = std::fs::metadata(&source).unwrap();
            (m.mtime(), m.mtime_nsec())
        },
        "mtime"
    );
    eprintln!(
        "restored file: {} bytes, st_blocks {} ({} bytes allocated; the source has {allocated})",
        meta.len(),
        meta.blocks(),
        meta.blocks() * 512
    );
    assert!(
        meta.blocks() * 512 < 64 * MIB,
        "the restore is not sparse: {} bytes allocated for {} bytes with 4 MiB of data",
        meta.blocks() * 512,
        meta.len()
    );

    // The data regions hold what was written there (not only the same as the source,
    // in case the source was read wrong too), then every byte matches.
    let f = File::open(&restored).unwrap();
    let mut got = vec![0u8; MIB as usize];
    for (i, at) in REGIONS.iter().enumerate() {
        f.read_exact_at(&mut got, *at).unwrap();
        assert!(
            got == random_bytes(region_seed(seed, i), MIB as usize),
            "the 1 MiB at offset {at} did not come back"
        );
    }
    let started = Instant::now();
    assert_same_content(&source, &restored);
    eprintln!("comparing 5 GiB took {:?}", started.elapsed());
}
