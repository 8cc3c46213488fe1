//! Where repository files live. The engine names files by repository-relative paths
//! (`config`, `index/<id>`, `data/ab/<id>`) and reaches them only through [`Storage`],
//! so a remote tier (S3, another mount) is one more implementation of this trait.
//!
//! Every write is atomic: to a temporary name in the same directory, fsync, rename,
//! fsync the directory. Names starting with '.' are temporaries and never listed. A
//! pack is written as it fills ([`Storage::stage`]), its name given at the end.
//! [`S3Storage`] (storage/s3.rs) keeps a repository in an S3-compatible bucket, and
//! [`open_storage`] picks the implementation from a location string.

mod s3;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use rand::RngCore;

pub use s3::{S3Options, S3Storage};

use crate::error::{IoContext, Result};

/// Opens the storage a location string names: `s3://bucket/prefix` is an [`S3Storage`]
/// whose endpoint, region and credentials come from the `AWS_*` environment variables
/// (see [`S3Options::from_url`]); anything else is a local directory ([`LocalDir`]).
/// Nothing is read or written yet: open the repository on it with
/// [`crate::Repository::open_on`].
pub fn open_storage(location: &str) -> Result<Arc<dyn Storage>> {
    if is_s3(location) {
        Ok(Arc::new(S3Storage::new(&S3Options::from_url(location)?)?))
    } else {
        Ok(Arc::new(LocalDir::new(Path::new(location))))
    }
}

/// True for an `s3://` location (as taken by [`open_storage`]).
pub fn is_s3(location: &str) -> bool {
    location.starts_with("s3://")
}

/// Access to the files of one repository, by repository-relative names such as
/// `config`, `index/<hex>`, `snapshots/<hex>`, `locks/<name>` and `data/<ab>/<hex>`.
///
/// Implement this for another tier (S3, ...) and open it with
/// [`crate::Repository::open_on`]. Contract: `write_atomic` makes a file appear whole or
/// not at all and durable when it returns; a missing file is reported by `read` as
/// [`crate::Error::Io`] whose source has kind `NotFound`; `list` never returns
/// temporaries.
pub trait Storage: Send + Sync {
    /// Where the repository is, for messages (a local path, or a URL for remote tiers).
    fn location(&self) -> PathBuf;
    /// A file's path or URL, for messages.
    fn describe(&self, name: &str) -> PathBuf;
    /// Reads a whole file.
    fn read(&self, name: &str) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`.
    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset` into `buf`, replacing what it held, so that a reader
    /// of many blobs reuses one buffer (a restore's threads share one allocator arena,
    /// see drd-memory). A storage of local files may keep the file open in `kept` for
    /// the caller's next read of it. A wrapper should pass this on to the storage it
    /// wraps.
    fn read_at_into(
        &self,
        name: &str,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
        kept: &mut KeptOpen,
    ) -> Result<()> {
        let _ = kept;
        *buf = self.read_at(name, offset, len)?;
        Ok(())
    }
    /// The size of a file, or `None` if it does not exist.
    fn size(&self, name: &str) -> Result<Option<u64>>;
    /// Writes a file atomically and durably (temp name, fsync, rename, fsync dir).
    fn write_atomic(&self, name: &str, data: &[u8]) -> Result<()>;
    /// Starts a file in `dir` whose name is known only once it is complete (a pack is
    /// named by the hash of its bytes). A local directory writes its bytes to a
    /// temporary file as they come, so that a pack being filled costs no memory; a
    /// storage that can only write whole files returns [`stage_in_memory`] (S3). A wrapper
    /// must pass this on to the storage it wraps.
    fn stage(&self, dir: &str) -> Result<Box<dyn Staged>>;
    /// Temporaries in `dir` (and, for "data", its fan-out directories) with their
    /// sizes: writes that never finished because their process was killed. Remove them
    /// (with [`Storage::remove`]) only under the exclusive lock, when nothing writes. A
    /// storage whose files appear whole (S3) has none.
    fn unfinished(&self, dir: &str) -> Result<Vec<(String, u64)>>;
    /// Lists the file names (not paths) in a directory; temporaries are left out.
    /// For "data" the two-character fan-out directories are walked and the returned
    /// names are "ab/abcd...".
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    /// Removes a file; a missing file is not an error.
    fn remove(&self, name: &str) -> Result<()>;
    /// Drops whatever was kept from earlier reads (read-ahead windows, object sizes),
    /// so that the next read returns what is stored now, even if a sync or repair tool
    /// has put another file under the same name. Every repository operation calls it
    /// when it starts; a storage that keeps nothing between reads does nothing here.
    fn forget_reads(&self) {}
}

/// A file being written whose name comes at the end (see [`Storage::stage`]). Dropped
/// without a commit, it leaves nothing behind.
pub trait Staged: Send {
    /// Appends bytes.
    fn append(&mut self, data: &[u8]) -> Result<()>;
    /// Makes the file appear whole under `name` in `storage`, durably, as
    /// [`Storage::write_atomic`] does.
    fn commit(self: Box<Self>, storage: &dyn Storage, name: &str) -> Result<()>;
}

/// A stage for a storage that writes whole files only: the bytes are kept in memory and
/// written with [`Storage::write_atomic`] at the commit.
pub fn stage_in_memory() -> Box<dyn Staged> {
    Box::new(InMemory(Vec::new()))
}

struct InMemory(Vec<u8>);

impl Staged for InMemory {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn commit(self: Box<Self>, storage: &dyn Storage, name: &str) -> Result<()> {
        storage.write_atomic(name, &self.0)
    }
}

/// A local file being staged: written to a temporary name in its directory's parent
/// (`data/.tmp-...` for a pack), renamed to its name at the commit.
/// Unbuffered: its one writer, the pack writer, hands it large pieces.
struct StagedFile {
    out: Option<File>,
    tmp: PathBuf,
    root: PathBuf,
}

impl Staged for StagedFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.out {
            Some(out) => out.write_all(data).ctx("write", &self.tmp),
            None => Err(crate::Error::Internal("append to a committed file".into())),
        }
    }

    fn commit(mut self: Box<Self>, _: &dyn Storage, name: &str) -> Result<()> {
        let file = self
            .out
            .take()
            .ok_or_else(|| crate::Error::Internal("a staged file committed twice".into()))?;
        file.sync_all().ctx("fsync", &self.tmp)?;
        // Synced, its pages are clean: let the kernel drop them now. A pack is read
        // rarely (verify, restore), and kept cached it would push the host's own working
        // set out of the page cache, the more so the larger the backup.
        let _ = posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        drop(file);
        let path = self.root.join(name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        LocalDir::create_dir(&dir)?;
        fs::rename(&self.tmp, &path).ctx("rename into place", &path)?;
        // Renamed: nothing left for `drop` to remove.
        self.tmp = PathBuf::new();
        LocalDir::sync_dir(&dir)
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A fresh temporary name (`.tmp-` and 16 hex digits) in `dir`.
fn temp_name(dir: &Path) -> PathBuf {
    let mut suffix = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut suffix);
    dir.join(format!(".tmp-{}", hex::encode(suffix)))
}

/// A repository in a local directory (or a mounted disk).
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// Storage rooted at `root`.
    pub fn new(root: &Path) -> Self {
        LocalDir {
            root: root.to_path_buf(),
        }
    }

    fn sync_dir(dir: &Path) -> Result<()> {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .ctx("fsync directory", dir)
    }

    /// Calls `f` with every file in `dir` (a missing `dir` has none), temporaries too:
    /// its name relative to `dir` ("ab/<id>" in the fan-out folders of "data", which
    /// are walked; other folders are not), its own name, and its entry.
    fn each_file(
        &self,
        dir: &str,
        f: &mut dyn FnMut(&str, &str, &fs::DirEntry) -> Result<()>,
    ) -> Result<()> {
        let mut folders = vec![String::new()];
        while let Some(sub) = folders.pop() {
            let path = match sub.as_str() {
                "" => self.root.join(dir),
                sub => self.root.join(dir).join(sub),
            };
            let entries = match fs::read_dir(&path) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(crate::Error::io("list", path, e)),
            };
            for entry in entries {
                let entry = entry.ctx("list", &path)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = if sub.is_empty() {
                    name.clone()
                } else {
                    format!("{sub}/{name}")
                };
                let ft = entry.file_type().ctx("stat", entry.path())?;
                if ft.is_dir() && dir == "data" && sub.is_empty() && !name.starts_with('.') {
                    folders.push(rel);
                } else if ft.is_file() {
                    f(&rel, &name, &entry)?;
                }
            }
        }
        Ok(())
    }

    /// Creates `dir` if it is missing, durably (its parent is synced).
    fn create_dir(dir: &Path) -> Result<()> {
        if !dir.exists() {
            fs::create_dir_all(dir).ctx("create directory", dir)?;
            if let Some(parent) = dir.parent() {
                LocalDir::sync_dir(parent)?;
            }
        }
        Ok(())
    }
}

/// A file one reader keeps open between its reads of it ([`Storage::read_at_into`]): a
/// restore reads the blobs of one pack one after another, and opening the pack for each
/// 2 KiB blob cost 5 us of the 7 (against 1.9 us for the read on a kept handle), a tenth
/// of the CPU of restoring many small files. Keep one only for one operation, such as a
/// restore, that holds the repository's lock: a handle kept longer would go on reading
/// a pack that a sync or repair tool has since renamed a new file over, and would keep
/// a pruned pack's space in use.
#[derive(Default)]
pub struct KeptOpen {
    path: PathBuf,
    file: Option<File>,
}

impl Storage for LocalDir {
    fn location(&self) -> PathBuf {
        self.root.clone()
    }

    fn describe(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.root.join(name);
        fs::read(&path).ctx("read", path)
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_at_into(name, offset, len, &mut buf, &mut KeptOpen::default())?;
        Ok(buf)
    }

    fn read_at_into(
        &self,
        name: &str,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
        kept: &mut KeptOpen,
    ) -> Result<()> {
        let path = self.root.join(name);
        buf.clear();
        buf.resize(len, 0);
        let file = match kept.file.take() {
            Some(file) if kept.path == path => file,
            _ => File::open(&path).ctx("open", &path)?,
        };
        file.read_exact_at(buf, offset).ctx("read", &path)?;
        kept.path = path;
        kept.file = Some(file);
        Ok(())
    }

    fn size(&self, name: &str) -> Result<Option<u64>> {
        let path = self.root.join(name);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::Error::io("stat", path, e)),
        }
    }

    fn write_atomic(&self, name: &str, data: &[u8]) -> Result<()> {
        let path = self.root.join(name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        LocalDir::create_dir(&dir)?;
        let tmp = temp_name(&dir);
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(crate::Error::io("write", &tmp, e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(crate::Error::io("rename into place", &path, e));
        }
        LocalDir::sync_dir(&dir)
    }

    fn stage(&self, dir: &str) -> Result<Box<dyn Staged>> {
        let dir = self.root.join(dir);
        LocalDir::create_dir(&dir)?;
        let tmp = temp_name(&dir);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx("create", &tmp)?;
        Ok(Box::new(StagedFile {
            out: Some(file),
            tmp,
            root: self.root.clone(),
        }))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.each_file(dir, &mut |rel, name, _| {
            if !name.starts_with('.') {
                out.push(rel.to_string());
            }
            Ok(())
        })?;
        out.sort();
        Ok(out)
    }

    fn unfinished(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let mut found = Vec::new();
        self.each_file(dir, &mut |rel, name, entry| {
            if name.starts_with(".tmp-") {
                let size = entry.metadata().ctx("stat", entry.path())?.len();
                found.push((format!("{dir}/{rel}"), size));
            }
            Ok(())
        })?;
        found.sort();
        Ok(found)
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.root.join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(crate::Error::io("remove", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_lists_and_hides_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDir::new(dir.path());
        s.write_atomic("data/ab/abcdef", b"pack").unwrap();
        s.write_atomic("index/01", b"idx").unwrap();
        fs::write(dir.path().join("index/.tmp-zz"), b"junk").unwrap();
        assert_eq!(s.list("data").unwrap(), vec!["ab/abcdef".to_string()]);
        assert_eq!(s.list("index").unwrap(), vec!["01".to_string()]);
        assert_eq!(s.read_at("data/ab/abcdef", 1, 2).unwrap(), b"ac");
        assert_eq!(s.size("index/01").unwrap(), Some(3));
        assert_eq!(s.size("index/02").unwrap(), None);
        s.remove("index/01").unwrap();
        assert!(s.list("index").unwrap().is_empty());
    }

    #[test]
    fn a_kept_file_serves_only_reads_of_the_same_file_of_the_same_storage() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (LocalDir::new(one.path()), LocalDir::new(two.path()));
        a.write_atomic("data/ab/ab01", b"first pack").unwrap();
        a.write_atomic("data/ab/ab02", b"other pack").unwrap();
        b.write_atomic("data/ab/ab01", b"the copy's").unwrap();
        let (mut buf, mut kept) = (Vec::new(), KeptOpen::default());
        let mut read = |s: &LocalDir, name: &str| {
            s.read_at_into(name, 4, 5, &mut buf, &mut kept).unwrap();
            String::from_utf8(buf.clone()).unwrap()
        };
        assert_eq!(read(&a, "data/ab/ab01"), "t pac");
        // Removed while kept: the kept handle still reads it.
        a.remove("data/ab/ab01").unwrap();
        assert_eq!(read(&a, "data/ab/ab01"), "t pac");
        assert_eq!(read(&a, "data/ab/ab02"), "r pac");
        assert_eq!(read(&b, "data/ab/ab01"), "copy'");
        let missing = a.read_at_into("data/ab/ab01", 0, 1, &mut buf, &mut kept);
        assert!(
            missing.is_err(),
            "a removed file is opened anew, and missing"
        );
    }

    #[test]
    fn a_staged_file_appears_whole_at_its_commit_and_a_dropped_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDir::new(dir.path());
        let mut staged = s.stage("data").unwrap();
        staged.append(b"first ").unwrap();
        staged.append(&vec![b'x'; 100_000]).unwrap();
        assert!(
            s.list("data").unwrap().is_empty(),
            "listed before its commit"
        );
        staged.commit(&s, "data/cd/cdef").unwrap();
        assert_eq!(s.list("data").unwrap(), vec!["cd/cdef".to_string()]);
        let back = s.read("data/cd/cdef").unwrap();
        assert_eq!((&back[..6], back.len()), (&b"first "[..], 6 + 100_000));

        let mut dropped = s.stage("data").unwrap();
        dropped.append(b"never committed").unwrap();
        drop(dropped);
        let left: Vec<_> = fs::read_dir(dir.path().join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("cd")]);

        // One a killed process left: found (in the fan-out folders too), not listed.
        let killed = s.stage("data").unwrap();
        std::mem::forget(killed);
        fs::write(dir.path().join("data/cd/.tmp-old"), b"12345").unwrap();
        let unfinished = s.unfinished("data").unwrap();
        assert_eq!(unfinished.len(), 2, "{unfinished:?}");
        assert!(unfinished.contains(&("data/cd/.tmp-old".to_string(), 5)));
        assert_eq!(s.list("data").unwrap(), vec!["cd/cdef".to_string()]);
    }
}
