//! The walk behind a backup: sources to trees. Runs on the calling thread: stats,
//! chunks and hashes files, queues new blobs for the sealing workers, and builds the
//! tree blobs bottom-up, reusing the parent snapshot's content for unchanged files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{BackupProgress, Job, Source};
use crate::error::{Error, Result};
use crate::format::{BackupStats, BlobKind, ChunkerParams, Id, Node, NodeKind, Tree};
use crate::pack;
use crate::repo::Repository;

/// A directory being assembled from several sources (the ancestors of a source root).
#[derive(Default)]
struct VirtualDir {
    entries: BTreeMap<Vec<u8>, VirtualEntry>,
    meta: Option<Node>,
}

enum VirtualEntry {
    Dir(VirtualDir),
    Leaf(Node),
}

pub(super) struct Walker<'a> {
    pub(super) repo: &'a Repository,
    pub(super) chunker: ChunkerParams,
    pub(super) buf: Vec<u8>,
    pub(super) tx: Sender<Vec<Job>>,
    /// Jobs not yet sent: small blobs travel in batches (see [`Walker::queue`]).
    pub(super) batch: Vec<Job>,
    pub(super) batch_bytes: usize,
    /// Blobs queued in this run (not yet in the index).
    pub(super) pending: HashSet<Id>,
    /// (dev, inode) -> content, so each hardlinked file is read once.
    pub(super) hardlinks: HashMap<(u64, u64), Vec<Id>>,
    pub(super) stats: BackupStats,
    pub(super) warnings: Vec<String>,
    pub(super) progress: &'a mut dyn FnMut(&BackupProgress),
    pub(super) last_progress: Instant,
    pub(super) interval: Duration,
    pub(super) cancel: Option<Arc<AtomicBool>>,
    pub(super) started: Instant,
    pub(super) report: BackupProgress,
    pub(super) time_ns: i64,
    /// Regular files (and streams) started on, for the read-ahead's window.
    pub(super) files_started: &'a AtomicU64,
}

/// Bytes of small blobs sent to the sealing workers in one message (at most).
const BATCH_BYTES: usize = 256 * 1024;
/// Blobs sent in one message (at most).
const BATCH_JOBS: usize = 128;

pub(super) fn pipeline_stopped() -> Error {
    Error::Internal("the pack writer stopped".into())
}

fn mtime_ns(m: &Metadata) -> i64 {
    m.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec())
}

fn ctime_ns(m: &Metadata) -> i64 {
    m.ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.ctime_nsec())
}

/// Size, mtime and ctime: what says a file changed while it was read.
fn fingerprint(m: &Metadata) -> (u64, i64, i64) {
    (m.len(), mtime_ns(m), ctime_ns(m))
}

fn node_from_meta(name: &[u8], kind: NodeKind, m: &Metadata) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: mtime_ns(m),
        ctime_ns: ctime_ns(m),
        dev: m.dev(),
        inode: m.ino(),
        nlink: m.nlink(),
        size: 0,
        content: Vec::new(),
        subtree: None,
        target: Vec::new(),
        xattrs: Vec::new(),
    }
}

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    sorted_xattrs(xattr::list(path), |name| xattr::get(path, name))
}

/// [`read_xattrs`] of an open file.
fn file_xattrs(file: &File) -> Vec<(Vec<u8>, Vec<u8>)> {
    use xattr::FileExt;
    sorted_xattrs(file.list_xattr(), |name| file.get_xattr(name))
}

/// The listed xattrs with their values, sorted by name.
fn sorted_xattrs(
    names: std::io::Result<xattr::XAttrs>,
    get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    // Filesystems without xattrs fail here; that just means there are none.
    if let Ok(names) = names {
        for name in names {
            if let Ok(Some(value)) = get(&name) {
                out.push((name.as_bytes().to_vec(), value));
            }
        }
    }
    out.sort();
    out
}

/// The path a path source is backed up from.
pub(super) fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .map_err(|e| Error::io("find current directory", path, e))?
            .join(path))
    }
}

pub(super) fn build_excludes(root: &Path, patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| {
            Error::InvalidPlan(format!("exclude pattern {p:?} for {}: {e}", root.display()))
        })?;
        b.add(g);
    }
    b.build()
        .map_err(|e| Error::InvalidPlan(format!("excludes for {}: {e}", root.display())))
}

impl Walker<'_> {
    pub(super) fn run(&mut self, sources: Vec<Source>, parent_root: Option<&Tree>) -> Result<Id> {
        let mut root = VirtualDir::default();
        for source in sources {
            match source {
                Source::Path {
                    root: path,
                    excludes,
                } => {
                    self.add_path_source(&mut root, &path, &excludes, parent_root)?;
                }
                Source::Stream { name, mut reader } => {
                    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
                    let Some((leaf, dirs)) = parts.split_last() else {
                        return Err(Error::InvalidPlan(format!("stream name {name:?} is empty")));
                    };
                    if parts.iter().any(|p| *p == "." || *p == "..") {
                        return Err(Error::InvalidPlan(format!(
                            "stream name {name:?} may not hold . or .."
                        )));
                    }
                    self.report.current_path = name.clone();
                    let (content, size) = match self.chunk_stream(&mut reader) {
                        Ok(r) => r,
                        Err(ChunkError::Io(e)) => {
                            return Err(Error::SourceFailed {
                                source_name: format!("stream {name}"),
                                cause: e.to_string(),
                            })
                        }
                        Err(ChunkError::Stopped(e)) => return Err(e),
                    };
                    let (uid, gid) = std::fs::metadata("/proc/self")
                        .map(|m| (m.uid(), m.gid()))
                        .unwrap_or((0, 0));
                    let node = Node {
                        name: leaf.as_bytes().to_vec(),
                        kind: NodeKind::File,
                        mode: 0o600,
                        uid,
                        gid,
                        mtime_ns: self.time_ns,
                        ctime_ns: self.time_ns,
                        dev: 0,
                        inode: 0,
                        nlink: 1,
                        size,
                        content,
                        subtree: None,
                        target: Vec::new(),
                        xattrs: Vec::new(),
                    };
                    self.stats.files_new += 1;
                    self.stats.file_count += 1;
                    self.stats.total_size += size;
                    self.report.files_done += 1;
                    self.report.files_seen += 1;
                    self.files_started
                        .store(self.report.files_seen, Ordering::Relaxed);
                    let dirs: Vec<Vec<u8>> = dirs.iter().map(|d| d.as_bytes().to_vec()).collect();
                    insert_virtual(&mut root, &dirs, node, &name, None)?;
                }
            }
        }
        let id = self.store_virtual(root)?;
        self.flush_jobs()?;
        self.emit(true);
        Ok(id)
    }

    fn add_path_source(
        &mut self,
        root: &mut VirtualDir,
        path: &Path,
        excludes: &[String],
        parent_root: Option<&Tree>,
    ) -> Result<()> {
        let abs = absolute(path)?;
        let mut parts: Vec<Vec<u8>> = Vec::new();
        for c in abs.components() {
            match c {
                Component::Normal(n) => parts.push(n.as_bytes().to_vec()),
                Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        let Some((leaf, dirs)) = parts.split_last() else {
            return Err(Error::InvalidPlan(
                "backing up / as a whole is not supported: list its directories".into(),
            ));
        };
        let globs = build_excludes(&abs, excludes)?;
        // The root itself is followed if it is a symlink (the operator named it).
        let meta = std::fs::metadata(&abs).map_err(|e| Error::SourceFailed {
            source_name: abs.display().to_string(),
            cause: e.to_string(),
        })?;
        let parent_node = parent_root.and_then(|t| self.find_parent_node(t, &parts));
        let node = self.backup_entry(&abs, &abs, leaf, &meta, parent_node.as_ref(), &globs)?;
        let Some(node) = node else {
            return Ok(());
        };
        // Ancestors get the metadata of the real directories.
        let mut ancestors = Vec::new();
        let mut p = PathBuf::from("/");
        for d in dirs {
            p.push(OsStr::from_bytes(d));
            let n = std::fs::symlink_metadata(&p)
                .ok()
                .map(|m| node_from_meta(d, NodeKind::Dir, &m));
            ancestors.push(n);
        }
        insert_virtual(
            root,
            dirs,
            node,
            &abs.display().to_string(),
            Some(&ancestors),
        )
    }

    /// Finds the node at `parts` in the parent snapshot.
    fn find_parent_node(&self, root: &Tree, parts: &[Vec<u8>]) -> Option<Node> {
        let mut tree = root.clone();
        for (i, part) in parts.iter().enumerate() {
            let node = tree.nodes.iter().find(|n| &n.name == part)?.clone();
            if i + 1 == parts.len() {
                return Some(node);
            }
            tree = self
                .repo
                .read_tree(&node.subtree?, "parent snapshot")
                .ok()?;
        }
        None
    }

    /// Backs up one entry (recursing into directories). `None` means skipped.
    fn backup_entry(
        &mut self,
        path: &Path,
        source_root: &Path,
        name: &[u8],
        meta: &Metadata,
        parent: Option<&Node>,
        globs: &GlobSet,
    ) -> Result<Option<Node>> {
        self.check_cancel()?;
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut node = node_from_meta(name, NodeKind::Dir, meta);
            node.xattrs = read_xattrs(path);
            let parent_tree = match parent {
                Some(Node {
                    kind: NodeKind::Dir,
                    subtree: Some(id),
                    ..
                }) => self.repo.read_tree(id, "parent snapshot").ok(),
                _ => None,
            };
            let tree = self.backup_dir(path, source_root, parent_tree.as_ref(), globs)?;
            node.subtree = Some(self.store_tree(&tree)?);
            self.stats.dirs += 1;
            Ok(Some(node))
        } else if ft.is_symlink() {
            let mut node = node_from_meta(name, NodeKind::Symlink, meta);
            match std::fs::read_link(path) {
                Ok(t) => node.target = t.as_os_str().as_bytes().to_vec(),
                Err(e) => {
                    self.warn(format!("skipped symlink {}: {e}", path.display()));
                    return Ok(None);
                }
            }
            self.stats.file_count += 1;
            self.stats.files_new += u64::from(parent.is_none());
            self.stats.files_unchanged += u64::from(parent.is_some());
            Ok(Some(node))
        } else if ft.is_file() {
            self.report.files_seen += 1;
            self.files_started
                .store(self.report.files_seen, Ordering::Relaxed);
            self.report.current_path = path.display().to_string();
            let result = self.backup_file(path, name, meta, parent);
            self.report.files_done += 1;
            self.emit(false);
            result
        } else if ft.is_fifo() {
            // A named pipe has no content; restore makes it again with mkfifo.
            let node = node_from_meta(name, NodeKind::Fifo, meta);
            self.stats.file_count += 1;
            self.stats.files_new += u64::from(parent.is_none());
            self.stats.files_unchanged += u64::from(parent.is_some());
            Ok(Some(node))
        } else {
            self.warn(format!(
                "skipped {}: special files (devices, sockets) are not backed up",
                path.display()
            ));
            Ok(None)
        }
    }

    fn backup_dir(
        &mut self,
        dir: &Path,
        source_root: &Path,
        parent: Option<&Tree>,
        globs: &GlobSet,
    ) -> Result<Tree> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.warn(format!(
                    "could not list {}: {e}; stored as empty",
                    dir.display()
                ));
                return Ok(Tree::default());
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => names.push((e.file_name(), e)),
                Err(e) => self.warn(format!("could not list {}: {e}", dir.display())),
            }
        }
        names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut tree = Tree::default();
        for (name, entry) in names {
            let path = dir.join(&name);
            if !globs.is_empty() {
                let rel = path.strip_prefix(source_root).unwrap_or(&path);
                if globs.is_match(&path) || globs.is_match(rel) || globs.is_match(&name) {
                    continue;
                }
            }
            // lstat relative to the open directory: no walk down the whole path again.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    self.warn(format!("skipped {}: {e}", path.display()));
                    continue;
                }
            };
            let name = name.as_bytes();
            let parent_node = parent.and_then(|t| {
                t.nodes
                    .binary_search_by(|n| n.name.as_slice().cmp(name))
                    .ok()
                    .map(|i| &t.nodes[i])
            });
            if let Some(node) =
                self.backup_entry(&path, source_root, name, &meta, parent_node, globs)?
            {
                tree.nodes.push(node);
            }
        }
        Ok(tree)
    }

    fn backup_file(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &Metadata,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        let mut node = node_from_meta(name, NodeKind::File, meta);
        node.size = meta.len();
        self.stats.file_count += 1;
        self.stats.total_size += meta.len();
        if let Some(p) = parent {
            if p.kind == NodeKind::File
                && p.size == node.size
                && p.mtime_ns == node.mtime_ns
                && p.ctime_ns == node.ctime_ns
                && p.inode == node.inode
                && p.content.iter().all(|id| self.repo.has_blob(id))
            {
                node.content = p.content.clone();
                // Setting or removing an xattr changes the ctime, so an unchanged
                // file's xattrs are the parent's.
                node.xattrs = p.xattrs.clone();
                self.stats.files_unchanged += 1;
                self.report.bytes_done += node.size;
                return Ok(Some(node));
            }
            self.stats.files_changed += 1;
        } else {
            self.stats.files_new += 1;
        }
        let link_key = (meta.dev(), meta.ino());
        if meta.nlink() > 1 {
            if let Some(content) = self.hardlinks.get(&link_key) {
                node.content = content.clone();
                node.xattrs = read_xattrs(path);
                return Ok(Some(node));
            }
        }
        let mut before = fingerprint(meta);
        for attempt in 0..2 {
            let mut file = match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
            {
                Ok(f) => f,
                Err(e) => {
                    self.warn(format!("skipped {}: {e}", path.display()));
                    return Ok(None);
                }
            };
            // Through the open file: one walk down the path fewer per file.
            node.xattrs = file_xattrs(&file);
            let (content, size) = match self.chunk_stream(&mut file) {
                Ok(c) => c,
                Err(ChunkError::Io(e)) => {
                    self.warn(format!("skipped {}: read failed: {e}", path.display()));
                    return Ok(None);
                }
                Err(ChunkError::Stopped(e)) => return Err(e),
            };
            let after = current_meta(&file, path);
            match after {
                Some(m) if fingerprint(&m) == before => {
                    node.content = content;
                    if meta.nlink() > 1 {
                        self.hardlinks.insert(link_key, node.content.clone());
                    }
                    return Ok(Some(node));
                }
                Some(m) => {
                    // Record what we actually stored.
                    node = Node {
                        content,
                        size,
                        ..node_from_meta(name, NodeKind::File, &m)
                    };
                    node.xattrs = file_xattrs(&file);
                    before = fingerprint(&m);
                    if attempt == 1 {
                        self.warn(format!(
                            "{} changed while it was read (twice); stored as read, it may be \
                             inconsistent",
                            path.display()
                        ));
                    }
                }
                None => {
                    self.warn(format!(
                        "{} vanished while it was read; skipped",
                        path.display()
                    ));
                    return Ok(None);
                }
            }
        }
        Ok(Some(node))
    }

    /// Chunks a stream, queueing new chunks; returns the chunk ids in order and the size.
    fn chunk_stream(&mut self, r: &mut dyn Read) -> Result<(Vec<Id>, u64), ChunkError> {
        let ChunkerParams { min, avg, max } = self.chunker;
        let max_len = max as usize;
        let mut ids = Vec::new();
        let mut len = 0usize;
        let mut eof = false;
        let mut total = 0u64;
        loop {
            while !eof && len < self.buf.len() {
                match r.read(&mut self.buf[len..]) {
                    Ok(0) => eof = true,
                    Ok(n) => len += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ChunkError::Io(e)),
                }
            }
            if len == 0 {
                break;
            }
            let mut consumed = 0usize;
            let cuts: Vec<(usize, usize)> =
                fastcdc::v2020::FastCDC::new(&self.buf[..len], min, avg, max)
                    .map(|c| (c.offset, c.length))
                    .take_while(|(off, _)| eof || off + max_len <= len)
                    .collect();
            for (off, length) in cuts {
                let id = self.store_chunk(off, length).map_err(ChunkError::Stopped)?;
                ids.push(id);
                consumed = off + length;
            }
            total += consumed as u64;
            self.buf.copy_within(consumed..len, 0);
            len -= consumed;
            if eof && len == 0 {
                break;
            }
            self.check_cancel().map_err(ChunkError::Stopped)?;
            self.emit(false);
        }
        Ok((ids, total))
    }

    fn store_chunk(&mut self, off: usize, len: usize) -> Result<Id> {
        let data = &self.buf[off..off + len];
        self.stats.bytes_read += len as u64;
        self.report.bytes_done += len as u64;
        let id = pack::blob_id(&self.repo.id_key, data);
        if !self.repo.has_blob(&id) && self.pending.insert(id) {
            self.report.bytes_added += len as u64;
            let data = data.to_vec();
            self.queue(Job {
                id,
                kind: BlobKind::Data,
                data,
            })?;
        }
        Ok(id)
    }

    fn store_tree(&mut self, tree: &Tree) -> Result<Id> {
        let data =
            bincode::serialize(tree).map_err(|e| Error::Internal(format!("encode tree: {e}")))?;
        let id = pack::blob_id(&self.repo.id_key, &data);
        if !self.repo.has_blob(&id) && self.pending.insert(id) {
            self.queue(Job {
                id,
                kind: BlobKind::Tree,
                data,
            })?;
        }
        Ok(id)
    }

    /// Queues a job for the sealing workers. Small blobs (most files are one small
    /// chunk) are sent in batches: one channel message per blob cost more in wake-ups
    /// and spinning than sealing them did. A batch holds at most one largest chunk's
    /// worth of bytes, so the channel's bound on bytes in flight holds as before.
    fn queue(&mut self, job: Job) -> Result<()> {
        let limit = (self.chunker.max as usize).min(BATCH_BYTES);
        if !self.batch.is_empty() && self.batch_bytes + job.data.len() > limit {
            self.flush_jobs()?;
        }
        self.batch_bytes += job.data.len();
        self.batch.push(job);
        if self.batch_bytes >= limit || self.batch.len() >= BATCH_JOBS {
            self.flush_jobs()?;
        }
        Ok(())
    }

    /// Sends the queued jobs.
    pub(super) fn flush_jobs(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        self.tx.send(batch).map_err(|_| pipeline_stopped())
    }

    fn store_virtual(&mut self, dir: VirtualDir) -> Result<Id> {
        let mut tree = Tree::default();
        for (name, entry) in dir.entries {
            match entry {
                VirtualEntry::Leaf(node) => tree.nodes.push(node),
                VirtualEntry::Dir(sub) => {
                    let mut node = sub
                        .meta
                        .clone()
                        .unwrap_or_else(|| Node::bare(&name, NodeKind::Dir, 0o755, self.time_ns));
                    node.subtree = Some(self.store_virtual(sub)?);
                    tree.nodes.push(node);
                }
            }
        }
        self.store_tree(&tree)
    }

    fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }

    fn emit(&mut self, force: bool) {
        if force || self.last_progress.elapsed() >= self.interval {
            self.last_progress = Instant::now();
            self.report.elapsed = self.started.elapsed();
            (self.progress)(&self.report);
        }
    }
}

enum ChunkError {
    /// Reading the source failed.
    Io(std::io::Error),
    /// The pipeline stopped or the run was cancelled.
    Stopped(Error),
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::Io(e) => write!(f, "{e}"),
            ChunkError::Stopped(e) => write!(f, "{e}"),
        }
    }
}

/// Metadata after reading: fstat, and the path must still name the same file.
fn current_meta(file: &File, path: &Path) -> Option<Metadata> {
    let m = file.metadata().ok()?;
    let l = std::fs::symlink_metadata(path).ok()?;
    (l.ino() == m.ino() && l.dev() == m.dev()).then_some(m)
}

/// Inserts `node` under the virtual directories `dirs`.
fn insert_virtual(
    root: &mut VirtualDir,
    dirs: &[Vec<u8>],
    node: Node,
    what: &str,
    ancestors: Option<&[Option<Node>]>,
) -> Result<()> {
    let mut cur = root;
    for (i, d) in dirs.iter().enumerate() {
        let entry = cur
            .entries
            .entry(d.clone())
            .or_insert_with(|| VirtualEntry::Dir(VirtualDir::default()));
        cur = match entry {
            VirtualEntry::Dir(v) => {
                if v.meta.is_none() {
                    v.meta = ancestors.and_then(|a| a.get(i).cloned().flatten());
                }
                v
            }
            VirtualEntry::Leaf(_) => {
                return Err(Error::InvalidPlan(format!(
                    "source {what} overlaps another source"
                )))
            }
        };
    }
    if cur.entries.contains_key(&node.name) {
        return Err(Error::InvalidPlan(format!(
            "source {what} overlaps another source"
        )));
    }
    cur.entries
        .insert(node.name.clone(), VirtualEntry::Leaf(node));
    Ok(())
}
