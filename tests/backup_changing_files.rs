//! Files that vanish or grow while drd reads them: `drctl backup --json` reports each
//! in its warnings, and the snapshot still restores what was read.
//!
//! The test stops drd (SIGSTOP) at a moment it can see in `/proc`: drd holds the file
//! open and its read position is short of the file's end, so drd has not yet looked at
//! the file again after reading it. The file changes while drd is stopped, then drd
//! goes on. No sleep orders anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drd_integration_tests::{backup_daemon, proc_state, random_bytes, text, Daemon, FILES_JOB};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Big enough that reading one takes drd far longer than one look at `/proc`; sparse,
/// so writing it costs nothing.
const BIG: u64 = 256 << 20;

/// The position of drd's open file description for `path`, if drd has it open.
fn read_position(pid: i32, path: &Path) -> Option<u64> {
    let deleted = format!("{} (deleted)", path.display());
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
        let fd = fd.ok()?;
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if target == path || target.as_os_str() == deleted.as_str() {
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .ok()?;
            return info
                .lines()
                .find_map(|l| l.strip_prefix("pos:"))
                .and_then(|p| p.trim().parse().ok());
        }
    }
    None
}

/// True once every thread of `pid` is stopped.
fn all_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        // A thread on its way out (Z, X) will not run again either.
        matches!(
            proc_state(&task.path().join("stat")),
            Some('T' | 't' | 'Z' | 'X')
        )
    })
}

/// Stops drd while it is part-way through a read of `path` that `is_wanted` accepts
/// (given the read position), and returns that position; drd stays stopped. `None`
/// if the backup ended first: this machine was too busy for the test to look in time.
fn stop_mid_read(
    pid: i32,
    path: &Path,
    backup: &std::thread::JoinHandle<std::process::Output>,
    mut is_wanted: impl FnMut(u64) -> bool,
) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "drd neither read {} nor finished the backup",
            path.display()
        );
        let Some(pos) = read_position(pid, path) else {
            if backup.is_finished() {
                return None;
            }
            std::thread::yield_now();
            continue;
        };
        if !is_wanted(pos) {
            continue;
        }
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        while !all_stopped(pid) {
            assert!(Instant::now() < deadline, "drd did not stop");
            std::thread::yield_now();
        }
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(BIG);
        match read_position(pid, path) {
            // Still open and short of the end: drd has not checked the file again yet.
            Some(now) if now < size && is_wanted(now) => return Some(now),
            _ => kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap(),
        }
    }
}

/// One backup with the changes made mid-read; `None` if drd got past a file before
/// the test could stop it (then the backup is not the one this test is about).
fn backup_with_changes(daemon: &Daemon, data: &Path) -> Option<serde_json::Value> {
    if data.exists() {
        std::fs::remove_dir_all(data).unwrap();
    }
    std::fs::create_dir_all(data).unwrap();
    // The walk reads names in byte order: a, b, c, d.
    std::fs::write(data.join("a-before"), random_bytes(1, 10_000)).unwrap();
    let vanishing = data.join("b-vanishing");
    sparse_file(&vanishing, BIG);
    let growing = data.join("c-growing");
    sparse_file(&growing, BIG);
    std::fs::write(data.join("d-after"), random_bytes(2, 10_000)).unwrap();
    let pid = daemon.pid();
    let cont = || kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();

    let socket = daemon.socket();
    let backup = std::thread::spawn(move || {
        drd_integration_tests::drctl(&socket, &["backup", "--job", "files", "--json"])
    });
    let changed = (|| {
        // Deleted while read: drd reads its open file to the end, then finds the name
        // gone. A position past 0: the read-ahead thread also opens each file for a
        // moment, to ask the kernel for its pages, but never reads, so the walk's own
        // read is the one that has moved on.
        stop_mid_read(pid, &vanishing, &backup, |pos| pos > 0)?;
        std::fs::remove_file(&vanishing).unwrap();
        cont();

        // Grown during the first read, and again during the re-read that follows: drd
        // gives up re-reading and stores the second read, which saw both appends.
        let mut last = stop_mid_read(pid, &growing, &backup, |pos| pos > 0)?;
        append(&growing, &random_bytes(3, 4096));
        cont();
        // The re-read is the same file read again from the start: the position drops.
        let mut rereading = false;
        stop_mid_read(pid, &growing, &backup, |pos| {
            rereading |= pos < last;
            last = pos;
            rereading
        })?;
        append(&growing, &random_bytes(4, 4096));
        cont();
        Some(())
    })();

    let out = backup.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    changed?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(report)
}

fn sparse_file(path: &Path, len: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_file_deleted_or_grown_mid_read_is_reported_and_the_snapshot_restores() {
    let daemon = backup_daemon(FILES_JOB);
    let data: PathBuf = daemon.dir.path().join("data");
    let (vanishing, growing) = (data.join("b-vanishing"), data.join("c-growing"));
    let report = (0..5)
        .find_map(|_| backup_with_changes(&daemon, &data))
        .expect("five backups in a row got past a file before the test could stop drd");
    let warnings: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings in {report:#}"))
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings.contains(
            &format!(
                "{} vanished while it was read; skipped",
                vanishing.display()
            )
            .as_str()
        ),
        "{report:#}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with(&format!(
            "{} changed while it was read (twice)",
            growing.display()
        ))),
        "{report:#}"
    );
    assert_eq!(warnings.len(), 2, "{report:#}");

    // The snapshot holds what is there now: no vanished file, the grown file with
    // both appends, the files around them whole.
    daemon.restore_and_compare(
        &["--backup-id", report["snapshot"]["id"].as_str().unwrap()],
        &data,
        "restored",
    );
}
