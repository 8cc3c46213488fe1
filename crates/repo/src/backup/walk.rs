//! The walk behind a backup: sources to trees. Runs on the calling thread: lists and
//! stats, reuses the parent snapshot's content for unchanged files, hands the files to
//! read to the readers (`read`), chunks streams itself, and builds the tree blobs
//! bottom-up.
//!
//! A directory's tree can only be stored once its files are read, and a parent's once
//! its subdirectories' are: a closed directory waits as a [`Draft`] in a queue, in the
//! order the walk closed them (children before parents), and is stored as soon as the
//! readers are done with it. The walk goes on meanwhile, up to [`MAX_CLOSED`]
//! directories or [`MAX_TICKETS`] files ahead of the oldest one still waiting.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use globset::{Glob, GlobSet, GlobSetBuilder};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::chunk::{Chunks, Shared};
use super::read::{Outcome, Place, Task, What};
use super::{BackupProgress, Source};
use crate::error::{Error, Result};
use crate::format::{BackupStats, Id, Node, NodeKind, Tree};

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
    pub(super) shared: &'a Shared<'a>,
    /// The walk's own chunker: streams and trees.
    pub(super) chunks: Chunks<'a>,
    /// Files to read, to the readers.
    pub(super) tasks: Sender<Task>,
    /// Files read, from the readers.
    pub(super) outcomes: Receiver<Outcome>,
    /// Files handed out and directories waiting for them.
    pub(super) drafts: Drafts,
    /// (dev, inode) -> content, so each hardlinked file is read once.
    pub(super) hardlinks: HashMap<(u64, u64), Vec<Id>>,
    /// Hardlinked files handed to a reader whose content is not in `hardlinks` yet.
    pub(super) linking: HashSet<(u64, u64)>,
    pub(super) stats: BackupStats,
    /// Bytes of unchanged files taken from the parent snapshot (for progress).
    pub(super) bytes_reused: u64,
    pub(super) warnings: Vec<String>,
    pub(super) progress: &'a mut dyn FnMut(&BackupProgress),
    pub(super) last_progress: Instant,
    pub(super) interval: Duration,
    pub(super) started: Instant,
    pub(super) report: BackupProgress,
    pub(super) time_ns: i64,
    /// Regular files (and streams) started on, for the read-ahead's window.
    pub(super) files_started: &'a AtomicU64,
}

/// Closed directories the walk may run ahead of the oldest one not yet stored.
const MAX_CLOSED: usize = 1024;
/// Files handed to the readers and not yet put in their place (at most, unless one
/// directory holds more).
const MAX_TICKETS: usize = 16 * 1024;

/// The walk's bookkeeping of what waits for the readers.
#[derive(Default)]
pub(super) struct Drafts {
    next_ticket: u64,
    /// Outcomes that came back, by ticket, until their directory is stored.
    results: HashMap<u64, Option<Node>>,
    /// Tickets handed out and not yet put in their place.
    open_tickets: usize,
    /// Closed directories waiting for their files, oldest first.
    closed: VecDeque<(u64, Draft)>,
    next_dir: u64,
    /// Stored directories whose parent has not taken their tree id yet.
    stored_dirs: HashMap<u64, Id>,
}

/// A directory's entries in name order, some still waiting for a reader or a
/// subdirectory.
#[derive(Default)]
pub(super) struct Draft {
    entries: Vec<(Node, Slot)>,
    /// Entries before this one are known to be ready.
    ready_upto: usize,
}

/// What an entry of a [`Draft`] still waits for.
enum Slot {
    Ready,
    /// The reader's outcome for this ticket replaces the node.
    File(u64),
    /// Another name of a file a reader has: its content, once stored.
    Link,
    /// This closed directory's tree id.
    Dir(u64),
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
pub(super) fn fingerprint(m: &Metadata) -> (u64, i64, i64) {
    (m.len(), mtime_ns(m), ctime_ns(m))
}

pub(super) fn node_from_meta(name: &[u8], kind: NodeKind, m: &Metadata) -> Node {
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
pub(super) fn file_xattrs(file: &File) -> Vec<(Vec<u8>, Vec<u8>)> {
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
                Source::Stream { name, reader } => {
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
                        size: 0,
                        content: Vec::new(),
                        subtree: None,
                        target: Vec::new(),
                        xattrs: Vec::new(),
                    };
                    self.report.files_seen += 1;
                    self.files_started
                        .store(self.report.files_seen, Ordering::Relaxed);
                    let what = What::Stream {
                        name: name.clone(),
                        reader,
                    };
                    let ticket = self.hand_out(node, what)?;
                    // Streams are read one at a time, after every path source before.
                    let node = self.take_result(ticket)?.ok_or_else(|| {
                        Error::Internal(format!("stream {name} came back without content"))
                    })?;
                    self.stats.files_new += 1;
                    self.stats.file_count += 1;
                    self.stats.total_size += node.size;
                    let dirs: Vec<Vec<u8>> = dirs.iter().map(|d| d.as_bytes().to_vec()).collect();
                    insert_virtual(&mut root, &dirs, node, &name, None)?;
                }
            }
        }
        let id = self.store_virtual(root)?;
        self.chunks.flush()?;
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
        let at = Place {
            path: &abs,
            dir: None,
        };
        let entry = self.backup_entry(at, &abs, leaf, &meta, parent_node.as_ref(), &globs)?;
        let Some(entry) = entry else {
            return Ok(());
        };
        // Everything under the root is stored before the root's own node is complete.
        self.settle(true)?;
        let root_draft = Draft {
            entries: vec![entry],
            ready_upto: 0,
        };
        let Some(node) = self.resolve(root_draft)?.pop() else {
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
                .shared
                .repo
                .read_tree(&node.subtree?, "parent snapshot")
                .ok()?;
        }
        None
    }

    /// Backs up one entry (recursing into directories) found at `at`. `None` means
    /// skipped.
    fn backup_entry(
        &mut self,
        at: Place<'_>,
        source_root: &Path,
        name: &[u8],
        meta: &Metadata,
        parent: Option<&Node>,
        globs: &GlobSet,
    ) -> Result<Option<(Node, Slot)>> {
        let path = at.path;
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
                }) => self.shared.repo.read_tree(id, "parent snapshot").ok(),
                _ => None,
            };
            let seq = self.backup_dir(path, source_root, parent_tree.as_ref(), globs)?;
            self.stats.dirs += 1;
            Ok(Some((node, Slot::Dir(seq))))
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
            Ok(Some((node, Slot::Ready)))
        } else if ft.is_file() {
            self.report.files_seen += 1;
            self.files_started
                .store(self.report.files_seen, Ordering::Relaxed);
            let entry = self.backup_file(at, name, meta, parent)?;
            if !matches!(entry.1, Slot::File(_)) {
                self.report.files_done += 1;
            }
            // The path as text only when a report goes out, not a string per file.
            if self.report_due() {
                self.report.current_path = path.display().to_string();
                self.emit(true);
            }
            Ok(Some(entry))
        } else if ft.is_fifo() {
            // A named pipe has no content; restore makes it again with mkfifo.
            let node = node_from_meta(name, NodeKind::Fifo, meta);
            self.stats.file_count += 1;
            self.stats.files_new += u64::from(parent.is_none());
            self.stats.files_unchanged += u64::from(parent.is_some());
            Ok(Some((node, Slot::Ready)))
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
    ) -> Result<u64> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.warn(format!(
                    "could not list {}: {e}; stored as empty",
                    dir.display()
                ));
                return self.close(Draft::default());
            }
        };
        // Opened for the readers, who open its files by name in it. The walk lets go of
        // it before it goes down into a subdirectory (and opens it again for the next
        // file): going down a deep tree costs no descriptor per level beyond the one
        // its listing already holds, only the directories of the files in flight. A
        // directory that cannot be opened (it was just removed) has its files opened
        // by path.
        let mut dir_fd: Option<Arc<OwnedFd>> = None;
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => names.push((e.file_name(), e)),
                Err(e) => self.warn(format!("could not list {}: {e}", dir.display())),
            }
        }
        names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut draft = Draft::default();
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
            if meta.is_dir() {
                dir_fd = None;
            } else if meta.is_file() && dir_fd.is_none() {
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                dir_fd = nix::fcntl::open(dir, flags, Mode::empty())
                    .ok()
                    .map(Arc::new);
            }
            let at = Place {
                path: &path,
                dir: dir_fd.as_ref(),
            };
            if let Some(entry) =
                self.backup_entry(at, source_root, name, &meta, parent_node, globs)?
            {
                draft.entries.push(entry);
            }
        }
        self.close(draft)
    }

    /// A file: its parent's content when unchanged, a known hardlink's, or a ticket for
    /// a reader.
    fn backup_file(
        &mut self,
        at: Place<'_>,
        name: &[u8],
        meta: &Metadata,
        parent: Option<&Node>,
    ) -> Result<(Node, Slot)> {
        let path = at.path;
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
                && p.content.iter().all(|id| self.shared.repo.has_blob(id))
            {
                node.content = p.content.clone();
                // Setting or removing an xattr changes the ctime, so an unchanged
                // file's xattrs are the parent's.
                node.xattrs = p.xattrs.clone();
                self.stats.files_unchanged += 1;
                self.bytes_reused += node.size;
                return Ok((node, Slot::Ready));
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
                return Ok((node, Slot::Ready));
            }
            if self.linking.contains(&link_key) {
                node.xattrs = read_xattrs(path);
                return Ok((node, Slot::Link));
            }
            self.linking.insert(link_key);
        }
        let what = What::File {
            path: path.to_path_buf(),
            dir: at.dir.cloned(),
            before: fingerprint(meta),
        };
        let ticket = self.hand_out(node, what)?;
        Ok((Node::bare(name, NodeKind::File, 0, 0), Slot::File(ticket)))
    }

    /// Gives a file or stream to the readers.
    fn hand_out(&mut self, node: Node, what: What) -> Result<u64> {
        let ticket = self.drafts.next_ticket;
        self.drafts.next_ticket += 1;
        self.drafts.open_tickets += 1;
        let mut task = Task { ticket, node, what };
        // Wait for room, putting what came back in place meanwhile.
        loop {
            match self.tasks.send_timeout(task, self.tick()) {
                Ok(()) => return Ok(ticket),
                Err(SendTimeoutError::Timeout(t)) => {
                    task = t;
                    self.pump(false)?;
                    self.emit(false);
                    self.check_cancel()?;
                }
                // The readers are gone: they stopped on an error; find it.
                Err(SendTimeoutError::Disconnected(_)) => loop {
                    self.pump(true)?;
                },
            }
        }
    }

    /// Closes a directory: it waits in the queue until its files are read. Stores
    /// what is ready, and waits for the oldest when the walk is too far ahead.
    fn close(&mut self, draft: Draft) -> Result<u64> {
        let seq = self.drafts.next_dir;
        self.drafts.next_dir += 1;
        self.drafts.closed.push_back((seq, draft));
        self.settle(false)?;
        Ok(seq)
    }

    /// Stores closed directories, oldest first, while they are ready; with `all`,
    /// waits for each in turn until none is left.
    fn settle(&mut self, all: bool) -> Result<()> {
        self.pump(false)?;
        loop {
            let too_far =
                self.drafts.closed.len() > MAX_CLOSED || self.drafts.open_tickets > MAX_TICKETS;
            let Some((_, front)) = self.drafts.closed.front_mut() else {
                break;
            };
            if !all && !too_far && !front.is_ready(&self.drafts.results) {
                break;
            }
            let Some((seq, draft)) = self.drafts.closed.pop_front() else {
                break;
            };
            let nodes = self.resolve(draft)?;
            let id = self.store_tree(&Tree { nodes })?;
            self.drafts.stored_dirs.insert(seq, id);
        }
        Ok(())
    }

    /// A draft's nodes, complete: waits for its files; skipped files are left out.
    fn resolve(&mut self, draft: Draft) -> Result<Vec<Node>> {
        let mut nodes = Vec::with_capacity(draft.entries.len());
        for (mut node, slot) in draft.entries {
            match slot {
                Slot::Ready => nodes.push(node),
                Slot::Dir(seq) => {
                    let id = self.drafts.stored_dirs.remove(&seq).ok_or_else(|| {
                        Error::Internal(format!("directory {seq} was not stored before its parent"))
                    })?;
                    node.subtree = Some(id);
                    nodes.push(node);
                }
                Slot::File(ticket) => {
                    let Some(read) = self.take_result(ticket)? else {
                        continue;
                    };
                    if read.nlink > 1 {
                        let key = (read.dev, read.inode);
                        self.linking.remove(&key);
                        self.hardlinks.insert(key, read.content.clone());
                    }
                    nodes.push(read);
                }
                Slot::Link => match self.hardlinks.get(&(node.dev, node.inode)) {
                    Some(content) => {
                        node.content = content.clone();
                        nodes.push(node);
                    }
                    None => self.warn(format!(
                        "skipped {}: another name of the same file could not be read",
                        String::from_utf8_lossy(&node.name)
                    )),
                },
            }
        }
        Ok(nodes)
    }

    /// The outcome of one ticket, waiting for it.
    fn take_result(&mut self, ticket: u64) -> Result<Option<Node>> {
        loop {
            if let Some(node) = self.drafts.results.remove(&ticket) {
                self.drafts.open_tickets -= 1;
                return Ok(node);
            }
            self.pump(true)?;
        }
    }

    /// Takes the outcomes that came back; with `wait`, waits a tick for one first.
    /// A reader's error ends the walk.
    fn pump(&mut self, wait: bool) -> Result<()> {
        if wait {
            match self.outcomes.recv_timeout(self.tick()) {
                Ok(outcome) => self.put(outcome)?,
                Err(RecvTimeoutError::Timeout) => {
                    self.emit(false);
                    self.check_cancel()?;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.check_cancel()?;
                    return Err(Error::Internal("the file readers stopped".into()));
                }
            }
        }
        while let Ok(outcome) = self.outcomes.try_recv() {
            self.put(outcome)?;
        }
        Ok(())
    }

    fn put(&mut self, outcome: Outcome) -> Result<()> {
        self.warnings.extend(outcome.warnings);
        self.report.files_done += 1;
        self.drafts.results.insert(outcome.ticket, outcome.node?);
        Ok(())
    }

    /// How long to wait at most before the next progress report.
    fn tick(&self) -> Duration {
        self.interval
            .clamp(Duration::from_millis(1), Duration::from_millis(100))
    }

    fn store_tree(&mut self, tree: &Tree) -> Result<Id> {
        let data =
            bincode::serialize(tree).map_err(|e| Error::Internal(format!("encode tree: {e}")))?;
        self.chunks.tree(&data)
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
        self.shared.check_stop()
    }

    fn report_due(&self) -> bool {
        self.last_progress.elapsed() >= self.interval
    }

    fn emit(&mut self, force: bool) {
        if force || self.report_due() {
            self.last_progress = Instant::now();
            self.report.elapsed = self.started.elapsed();
            self.report.bytes_done =
                self.bytes_reused + self.shared.bytes_read.load(Ordering::Relaxed);
            self.report.bytes_added = self.shared.bytes_added.load(Ordering::Relaxed);
            (self.progress)(&self.report);
        }
    }
}

impl Draft {
    /// True when every file in it has come back.
    fn is_ready(&mut self, results: &HashMap<u64, Option<Node>>) -> bool {
        while let Some((_, slot)) = self.entries.get(self.ready_upto) {
            if let Slot::File(ticket) = slot {
                if !results.contains_key(ticket) {
                    return false;
                }
            }
            self.ready_upto += 1;
        }
        true
    }
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
