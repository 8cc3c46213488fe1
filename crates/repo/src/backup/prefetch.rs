//! Read-ahead for the walk. The reader threads read one file each at a time, so on a
//! cold page cache the disk sees only as many requests as there are readers; this
//! thread walks the same sources in the same order a bounded distance ahead of the walk
//! and asks the kernel for what comes next (`posix_fadvise(WILLNEED)` queues the reads
//! and returns), so the disk works on many files at once while the readers hash theirs.
//! On a warm cache that was pure cost (an open and an fadvise per file: 15 % of a first
//! backup's CPU on 500,000 small files), so it first asks whether a file is cached (a
//! one-byte `preadv2(RWF_NOWAIT)`, which fails rather than wait for the disk) and,
//! after a run of files that all were, only samples one file in [`SAMPLE_EVERY`] until
//! one is not.
//!
//! It only warms the page cache: it never produces data for the backup, so the order of
//! trees, the change-while-read check and memory use are the walk's alone, and whatever
//! goes wrong here (unreadable files, races with changes) is ignored.

use std::collections::VecDeque;
use std::fs::{File, FileType, OpenOptions};
use std::io::IoSliceMut;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use globset::GlobSet;
use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use rustix::io::{preadv2, Errno, ReadWriteFlags};

/// How many regular files the read-ahead may run ahead of the walk.
const AHEAD_FILES: u64 = 1024;
/// How many bytes of file content it may have asked for that the walk has not started
/// on; page cache, not process memory, but kept small so it is not evicted unread.
const AHEAD_BYTES: u64 = 32 * 1024 * 1024;
/// How many regular files it may stat ahead when it does not read content.
const AHEAD_FILES_META: u64 = 4096;
/// Files in a row found in the page cache after which it only samples.
const CACHED_RUN: u32 = 64;
/// While sampling, one file in this many is opened and probed.
const SAMPLE_EVERY: u64 = 64;

/// A source as the read-ahead sees it, in the walk's order.
pub(super) enum Source {
    /// A path source: its absolute root and excludes, as the walk applies them.
    Path { root: PathBuf, globs: GlobSet },
    /// A stream; the walk counts it as one file.
    Stream,
}

/// Where the read-ahead is allowed to be.
pub(super) struct Window<'a> {
    /// Regular files (and streams) the walk has started on, in walk order.
    pub started: &'a AtomicU64,
    /// Set when the walk is over (done, failed or cancelled).
    pub stop: &'a AtomicBool,
    /// Ask for content (first backup) or only stat ahead (with a parent snapshot most
    /// files are unchanged and are never read, so reading ahead would only cost).
    pub content: bool,
}

/// Sets the flag when dropped.
pub(super) struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Walks `sources` ahead of the walk until it is done or `window.stop` is set.
pub(super) fn run(sources: &[Source], window: &Window<'_>) {
    let mut ahead = ReadAhead {
        window,
        index: 0,
        asked: VecDeque::new(),
        asked_bytes: 0,
        cached_run: 0,
        probe: true,
    };
    for source in sources {
        let more = match source {
            Source::Stream => {
                ahead.index += 1;
                true
            }
            // The walk follows the root when it is a symlink; so do we.
            Source::Path { root, globs } => match std::fs::metadata(root) {
                Ok(m) if m.is_dir() => ahead.dir(root, root, globs),
                Ok(m) if m.is_file() => ahead.file(root),
                _ => true,
            },
        };
        if !more {
            return;
        }
    }
}

struct ReadAhead<'w, 'a> {
    window: &'w Window<'a>,
    /// Walk-order number of the next regular file.
    index: u64,
    /// Files asked for that the walk has not started on: (index, bytes asked).
    asked: VecDeque<(u64, u64)>,
    asked_bytes: u64,
    /// Files in a row whose content was already cached.
    cached_run: u32,
    /// False once the filesystem refused the probe: then every file is asked for.
    probe: bool,
}

impl ReadAhead<'_, '_> {
    /// Returns false when the walk is over.
    fn dir(&mut self, dir: &Path, root: &Path, globs: &GlobSet) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return true;
        };
        // The type from the directory entry (no stat); the walk's order and excludes.
        let mut names: Vec<(std::ffi::OsString, Option<FileType>)> = entries
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name(), e.file_type().ok()))
            .collect();
        names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, ft) in names {
            if self.window.stop.load(Ordering::Relaxed) {
                return false;
            }
            let path = dir.join(&name);
            if !globs.is_empty() {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                if globs.is_match(&path) || globs.is_match(rel) || globs.is_match(&name) {
                    continue;
                }
            }
            let more = match ft {
                Some(t) if t.is_dir() => self.dir(&path, root, globs),
                Some(t) if t.is_file() => self.file(&path),
                _ => true,
            };
            if !more {
                return false;
            }
        }
        true
    }

    /// Waits until `path` is inside the window, then stats it and asks for its content.
    /// Returns false when the walk is over.
    fn file(&mut self, path: &Path) -> bool {
        let index = self.index;
        self.index += 1;
        let limit = if self.window.content {
            AHEAD_FILES
        } else {
            AHEAD_FILES_META
        };
        loop {
            if self.window.stop.load(Ordering::Relaxed) {
                return false;
            }
            let started = self.window.started.load(Ordering::Relaxed);
            while let Some(&(i, len)) = self.asked.front() {
                if i >= started {
                    break;
                }
                self.asked.pop_front();
                self.asked_bytes -= len;
            }
            if index < started {
                // The walk got here first: nothing to gain.
                return true;
            }
            if index < started + limit && self.asked_bytes < AHEAD_BYTES {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if !self.window.content {
            let _ = std::fs::symlink_metadata(path);
            return true;
        }
        if self.cached_run >= CACHED_RUN && !index.is_multiple_of(SAMPLE_EVERY) {
            return true;
        }
        // Opened without a stat first: one walk down the path, not two (on a warm
        // cache this thread's system calls were a sixth of a small-file backup's CPU).
        // O_NONBLOCK: if the file was swapped for a FIFO since the listing, do not hang.
        let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        else {
            return true;
        };
        let size = match f.metadata() {
            Ok(m) if m.is_file() && m.len() > 0 => m.len(),
            _ => return true,
        };
        // A large file gets its head; the kernel's own read-ahead follows the walk
        // through the rest.
        let len = size.min(AHEAD_BYTES - self.asked_bytes);
        if self.cached(&f, len - 1) {
            self.cached_run = self.cached_run.saturating_add(1);
            return true;
        }
        self.cached_run = 0;
        let _ = posix_fadvise(
            &f,
            0,
            libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX),
            PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        );
        self.asked.push_back((index, len));
        self.asked_bytes += len;
        true
    }

    /// Whether the byte at `offset` is in the page cache (then, most likely, so is what
    /// comes before it).
    fn cached(&mut self, f: &File, offset: u64) -> bool {
        if !self.probe {
            return false;
        }
        let mut byte = [0u8; 1];
        match preadv2(
            f,
            &mut [IoSliceMut::new(&mut byte)],
            offset,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(_) => true,
            Err(Errno::AGAIN) => false,
            // Not supported here (an old kernel, some filesystems): ask for everything,
            // as before the probe.
            Err(_) => {
                self.probe = false;
                false
            }
        }
    }
}
