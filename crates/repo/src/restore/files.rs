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
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::fallback::Reader;
use super::parts::{self, Part, Run, Split};
use super::target::TargetDir;
use super::{is_damage, DamagedFile, RestoreOptions, RestoreProgress, DAMAGED_SUFFIX};
use crate::error::{Error, IoContext, Result};
use crate::format::{Id, Node};
use crate::pack::BlobBuf;
use crate::threads::run_reporting;

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
        let threads = options.threads.max(1);
        let (parts, splits) = parts::cut(self, files, &order, threads);
        drop(order);
        let total_bytes: u64 = files.iter().map(|(_, n)| n.size).sum();
        let next = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let damaged: Mutex<Vec<DamagedFile>> = Mutex::new(Vec::new());
        let writer = Writer {
            reader: self,
            target,
            overwrite: options.overwrite,
            meta,
            bytes: &bytes,
        };
        let work = || {
            let mut buf = BlobBuf::default();
            loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(part) = parts.get(i) else { return };
                let file = &files[part.file as usize];
                let written = match part.split {
                    None => writer.whole(file, &mut buf).map(Some),
                    Some(s) => writer.part(file, part, &splits[s as usize], &mut buf),
                };
                match written {
                    Ok(None) => {}
                    Ok(Some(damage)) => {
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
        };
        run_reporting(threads, &work, &mut || {
            progress(&RestoreProgress {
                files_done: done.load(Ordering::Relaxed),
                files_total: files.len() as u64,
                bytes_done: bytes.load(Ordering::Relaxed),
                bytes_total: total_bytes,
                elapsed: started.elapsed(),
            });
        });
        if let Some(e) = first_error.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(Written {
            bytes: bytes.load(Ordering::Relaxed),
            damaged: damaged.into_inner().unwrap_or_default(),
        })
    }

    /// The plaintext length of a content blob that could not be read: from the index,
    /// or, for the one blob of a file the index lacks, what the file's size leaves.
    fn blob_len(&self, node: &Node, id: &Id) -> u64 {
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

/// What the writer threads share: where and how to write, and the byte count.
struct Writer<'a, 'r> {
    reader: &'a Reader<'r>,
    target: &'a TargetDir,
    overwrite: bool,
    meta: &'a MetaSink,
    bytes: &'a AtomicU64,
}

/// A file restored; `Some` when part of it could not be read from any tier.
type Restored = Option<DamagedFile>;

impl Writer<'_, '_> {
    /// Writes a file whole.
    fn whole(&self, (rel, node): &(PathBuf, Node), buf: &mut BlobBuf) -> Result<Restored> {
        let f = self.target.create_file(rel, self.overwrite)?;
        let run = self.run(&f, rel, node, &node.content, 0, buf)?;
        self.finish(rel, node, &f, run.tail_hole.then_some(run.end), run.damage)
    }

    /// Writes one part of a file cut into parts; `Some` when it was the file's last.
    fn part(
        &self,
        (rel, node): &(PathBuf, Node),
        part: &Part,
        split: &Split,
        buf: &mut BlobBuf,
    ) -> Result<Option<Restored>> {
        let f = split.file(|| self.target.create_file(rel, self.overwrite))?;
        let blobs = &node.content[part.blobs.start as usize..part.blobs.end as usize];
        let run = self.run(&f, rel, node, blobs, part.offset, buf)?;
        let last = part.blobs.end as usize == node.content.len();
        let Some(done) = split.done(f, run, last) else {
            return Ok(None);
        };
        let end = done.tail_hole.then_some(node.size);
        self.finish(rel, node, &done.file, end, done.damage)
            .map(Some)
    }

    /// Writes `blobs` from `offset` on. Zeros and parts that cannot be read are left as
    /// holes (the file was created empty).
    fn run(
        &self,
        f: &File,
        rel: &Path,
        node: &Node,
        blobs: &[Id],
        offset: u64,
        buf: &mut BlobBuf,
    ) -> Result<Run> {
        let context = format!("file /{}", rel.display());
        let mut run = Run {
            end: offset,
            tail_hole: false,
            damage: None,
        };
        for id in blobs {
            let (len, data) = match self.reader.blob(id, &context, buf) {
                Ok(data) => (data.len() as u64, Some(data)),
                Err(e) if is_damage(&e) => {
                    run.damage.get_or_insert_with(|| e.to_string());
                    (self.reader.blob_len(node, id), None)
                }
                Err(e) => return Err(e),
            };
            match data {
                Some(data) if !is_zero(data) => {
                    // The path is made only for an error.
                    f.write_all_at(data, run.end)
                        .map_err(|e| Error::io("write", self.target.full(rel), e))?;
                    run.tail_hole = false;
                }
                _ => run.tail_hole = true,
            }
            run.end += len;
            self.bytes.fetch_add(len, Ordering::Relaxed);
        }
        Ok(run)
    }

    /// Sets the length when the file ends in a hole (`end`), then the metadata; renames
    /// the file to `NAME.damaged` when part of it could not be read.
    fn finish(
        &self,
        rel: &Path,
        node: &Node,
        f: &File,
        end: Option<u64>,
        damage: Option<String>,
    ) -> Result<Restored> {
        let path = self.target.full(rel);
        if let Some(end) = end {
            f.set_len(end).ctx("set length of", &path)?;
        }
        self.meta.set(f, &path, node)?;
        let Some(reason) = damage else {
            return Ok(None);
        };
        let kept_as = match self
            .target
            .rename_with_suffix(rel, DAMAGED_SUFFIX, self.overwrite)
        {
            Ok(kept) => Some(self.target.full(&kept)),
            Err(e) => {
                // The real name must not hold a file with holes where data was.
                self.target.remove_file(rel)?;
                self.meta.warn(format!(
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
}

/// All zero bytes? (memcmp against a zero block: fast even in debug builds)
fn is_zero(data: &[u8]) -> bool {
    static ZERO: [u8; 4096] = [0; 4096];
    data.chunks(ZERO.len()).all(|c| c == &ZERO[..c.len()])
}
