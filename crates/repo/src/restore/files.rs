//! Writing file contents with several threads, and setting metadata through open
//! handles.
//!
//! A blob that cannot be read from any tier does not stop the restore: the file's
//! readable parts are written at their offsets (the unreadable ones left as holes), the
//! file gets its owner, mode and times, and it is renamed to `NAME.damaged` so nothing
//! takes it for the real file; the restore goes on with every other file and reports
//! the damaged ones.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::fallback::Reader;
use super::target::TargetDir;
use super::{is_damage, DamagedFile, RestoreOptions, RestoreProgress, DAMAGED_SUFFIX};
use crate::error::{Error, IoContext, Result};
use crate::format::Node;
use crate::pack::BlobBuf;

/// Who we run as: owners are restored only as root; otherwise a difference is reported.
#[derive(Clone, Copy)]
pub(super) struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn current() -> Owner {
        std::fs::metadata("/proc/self")
            .map(|m| Owner {
                uid: m.uid(),
                gid: m.gid(),
            })
            .unwrap_or(Owner { uid: 0, gid: 0 })
    }

    pub fn is_root(self) -> bool {
        self.uid == 0
    }
}

/// Sets metadata through open handles, and collects what it could not set. Shared by
/// the writer threads.
pub(super) struct MetaSink {
    pub me: Owner,
    warned_owner: AtomicBool,
    pub warnings: Mutex<Vec<String>>,
}

impl MetaSink {
    pub fn new(me: Owner) -> MetaSink {
        MetaSink {
            me,
            warned_owner: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
        }
    }

    fn warn(&self, warning: String) {
        if let Ok(mut w) = self.warnings.lock() {
            w.push(warning);
        }
    }

    /// Sets xattrs, owner, mode, then mtime of the entry open as `f` (in that order:
    /// chown clears setuid bits, and mtime must come after the content and xattrs).
    /// `path` is for messages only: nothing here resolves a path.
    pub fn set(&self, f: &File, path: &Path, node: &Node) -> Result<()> {
        use xattr::FileExt;
        for (name, value) in &node.xattrs {
            if let Err(e) = f.set_xattr(OsStr::from_bytes(name), value) {
                self.warn(format!(
                    "could not set xattr {} on {}: {e}",
                    String::from_utf8_lossy(name),
                    path.display()
                ));
            }
        }
        if self.me.is_root() {
            std::os::unix::fs::fchown(f, Some(node.uid), Some(node.gid))
                .ctx("set owner of", path)?;
        } else if (node.uid != self.me.uid || node.gid != self.me.gid)
            && !self.warned_owner.swap(true, Ordering::Relaxed)
        {
            self.warn("not running as root: file owners and groups were not restored".into());
        }
        f.set_permissions(std::fs::Permissions::from_mode(node.mode))
            .ctx("set mode of", path)?;
        let t = mtime(node);
        filetime::set_file_handle_times(f, Some(t), Some(t)).ctx("set mtime of", path)?;
        Ok(())
    }
}

pub(super) fn mtime(node: &Node) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// What the writer threads did.
pub(super) struct Written {
    /// Content bytes written (holes for unreadable parts included).
    pub bytes: u64,
    /// Files restored only in part.
    pub damaged: Vec<DamagedFile>,
}

impl Reader<'_> {
    /// Writes file contents with `options.threads` threads.
    pub(super) fn write_files(
        &self,
        files: &[(PathBuf, Node)],
        target: &TargetDir,
        options: &RestoreOptions,
        meta: &MetaSink,
        progress: &mut dyn FnMut(&RestoreProgress),
        started: Instant,
    ) -> Result<Written> {
        // Order by where the first blob lives, so packs are read roughly in sequence.
        let mut order: Vec<usize> = (0..files.len()).collect();
        let key = |i: &usize| {
            files[*i]
                .1
                .content
                .first()
                .and_then(|id| self.locate(id))
                .map(|l| (l.pack, l.entry.offset))
        };
        order.sort_by_cached_key(key);
        let total_bytes: u64 = files.iter().map(|(_, n)| n.size).sum();
        let next = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let damaged: Mutex<Vec<DamagedFile>> = Mutex::new(Vec::new());
        let threads = options.threads.max(1);
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for _ in 0..threads {
                handles.push(s.spawn(|| {
                    let mut buf = BlobBuf::default();
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(&idx) = order.get(i) else { return };
                        match self.write_one(
                            target,
                            &files[idx],
                            options.overwrite,
                            meta,
                            &bytes,
                            &mut buf,
                        ) {
                            Ok(damage) => {
                                if let Some(d) = damage {
                                    if let Ok(mut list) = damaged.lock() {
                                        list.push(d);
                                    }
                                }
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                if let Ok(mut slot) = first_error.lock() {
                                    slot.get_or_insert(e);
                                }
                                return;
                            }
                        }
                    }
                }));
            }
            let report = |progress: &mut dyn FnMut(&RestoreProgress)| {
                progress(&RestoreProgress {
                    files_done: done.load(Ordering::Relaxed),
                    files_total: files.len() as u64,
                    bytes_done: bytes.load(Ordering::Relaxed),
                    bytes_total: total_bytes,
                    elapsed: started.elapsed(),
                });
            };
            while handles.iter().any(|h| !h.is_finished()) {
                std::thread::sleep(Duration::from_millis(100));
                report(progress);
            }
            report(progress);
        });
        if let Some(e) = first_error.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(Written {
            bytes: bytes.load(Ordering::Relaxed),
            damaged: damaged.into_inner().unwrap_or_default(),
        })
    }

    /// Writes one file; `Some` when part of it could not be read from any tier.
    fn write_one(
        &self,
        target: &TargetDir,
        (rel, node): &(PathBuf, Node),
        overwrite: bool,
        meta: &MetaSink,
        bytes: &AtomicU64,
        buf: &mut BlobBuf,
    ) -> Result<Option<DamagedFile>> {
        let path = target.full(rel);
        let mut f = target.create_file(rel, overwrite)?;
        let context = format!("file /{}", rel.display());
        let mut pos = 0u64;
        let mut hole = false;
        let mut damage: Option<String> = None;
        for id in &node.content {
            let (len, data) = match self.blob(id, &context, buf) {
                Ok(data) => (data.len() as u64, Some(data)),
                Err(e) if is_damage(&e) => {
                    damage.get_or_insert_with(|| e.to_string());
                    (self.blob_len(node, id), None)
                }
                Err(e) => return Err(e),
            };
            match data {
                Some(data) if !is_zero(data) => {
                    f.write_all(data).ctx("write", &path)?;
                    hole = false;
                }
                // Zeros, or a part that cannot be read: leave a hole; set_len below
                // materializes a trailing one.
                _ => {
                    f.seek(SeekFrom::Current(len as i64))
                        .ctx("seek in", &path)?;
                    hole = true;
                }
            }
            pos += len;
            bytes.fetch_add(len, Ordering::Relaxed);
        }
        if hole {
            f.set_len(pos).ctx("set length of", &path)?;
        }
        meta.set(&f, &path, node)?;
        drop(f);
        let Some(reason) = damage else {
            return Ok(None);
        };
        let kept_as = match target.rename_with_suffix(rel, DAMAGED_SUFFIX, overwrite) {
            Ok(kept) => Some(target.full(&kept)),
            Err(e) => {
                // The real name must not hold a file with holes where data was.
                target.remove_file(rel)?;
                meta.warn(format!(
                    "could not keep the readable parts of {}: {e}",
                    path.display()
                ));
                None
            }
        };
        Ok(Some(DamagedFile {
            path: format!("/{}", rel.display()),
            kept_as,
            reason,
        }))
    }

    /// The plaintext length of a content blob that could not be read: from the index,
    /// or, for the one blob of a file the index lacks, what the file's size leaves.
    fn blob_len(&self, node: &Node, id: &crate::format::Id) -> u64 {
        if let Some(loc) = self.locate(id) {
            return u64::from(loc.entry.raw_len);
        }
        let mut known = 0u64;
        let mut unknown = 0usize;
        for blob in &node.content {
            match self.locate(blob) {
                Some(loc) => known += u64::from(loc.entry.raw_len),
                None => unknown += 1,
            }
        }
        if unknown == 1 {
            node.size.saturating_sub(known)
        } else {
            0
        }
    }
}

/// All zero bytes? (memcmp against a zero block: fast even in debug builds)
fn is_zero(data: &[u8]) -> bool {
    static ZERO: [u8; 4096] = [0; 4096];
    data.chunks(ZERO.len()).all(|c| c == &ZERO[..c.len()])
}
