//! Restore: plan the whole restore from the snapshot's trees first (validating every
//! name, so a crafted tree is refused before anything is written), then create
//! directories, write files in parallel (grouped by pack location), link hardlinks,
//! create symlinks last, and set directory metadata deepest first.
//!
//! Nothing is written outside the target: stored names may not be empty, ".", "..", or
//! hold '/' or NUL; every directory on the way is created by us or checked with lstat to
//! be a real directory; files are opened with O_NOFOLLOW; symlinks are created only
//! after all content is written, so no write goes through one.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::format::{Id, Node, NodeKind, Snapshot};
use crate::repo::Repository;

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Paths inside the snapshot to restore (with everything below them); empty = all.
    /// Written as in the snapshot, e.g. "/var/lib/app/db" (a leading '/' is optional).
    pub paths: Vec<PathBuf>,
    /// Directory to restore into; snapshot paths are recreated below it.
    pub target: PathBuf,
    /// Allow a non-empty target, replacing files that are in the way.
    pub overwrite: bool,
    /// Writer threads.
    pub threads: usize,
}

impl RestoreOptions {
    /// Writer threads when the caller has no better idea: twice the cores, at least 4.
    /// Restoring many small files waits on the filesystem (create, write, chown, chmod,
    /// utimes for each) more than on the CPU, so more threads than cores keep both busy.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).max(4))
    }
}

/// A progress report during a restore.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RestoreProgress {
    /// Files written so far.
    pub files_done: u64,
    /// Files to write.
    pub files_total: u64,
    /// Content bytes written so far.
    pub bytes_done: u64,
    /// Content bytes to write.
    pub bytes_total: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// The result of a restore.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RestoreSummary {
    /// Regular files restored (hardlinks included).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks restored.
    pub symlinks: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Things that could not be restored exactly (ownership when not root, xattrs the
    /// target filesystem refuses).
    pub warnings: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<(PathBuf, Node)>,
    links: Vec<(PathBuf, PathBuf)>,
    symlinks: Vec<(PathBuf, Node)>,
}

fn check_name(name: &[u8], dir: &Path) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::UnsafeName {
            name: String::from_utf8_lossy(name).into_owned(),
            dir: format!("/{}", dir.display()),
        });
    }
    Ok(())
}

/// Normalizes a filter path to its components.
fn filter_parts(p: &Path) -> Vec<Vec<u8>> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

/// Who we run as: owners are restored only as root; otherwise a difference is reported.
#[derive(Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    fn current() -> Owner {
        std::fs::metadata("/proc/self")
            .map(|m| Owner {
                uid: m.uid(),
                gid: m.gid(),
            })
            .unwrap_or(Owner { uid: 0, gid: 0 })
    }

    fn is_root(self) -> bool {
        self.uid == 0
    }
}

impl Repository {
    /// Restores a snapshot (or part of it) under `options.target`.
    pub fn restore(
        &self,
        snapshot: &Snapshot,
        options: &RestoreOptions,
        progress: &mut dyn FnMut(&RestoreProgress),
    ) -> Result<RestoreSummary> {
        let started = Instant::now();
        let mut summary = RestoreSummary::default();
        let _lock = self.lock_for_read(&mut summary.warnings)?;
        // Another process may have pruned (moved blobs) since this one read the index.
        self.refresh()?;
        let target = &options.target;
        match std::fs::read_dir(target) {
            Ok(mut entries) => {
                if entries.next().is_some() && !options.overwrite {
                    return Err(Error::TargetNotEmpty(target.clone()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("list restore target", target, e)),
        }

        let filters: Vec<Vec<Vec<u8>>> = options.paths.iter().map(|p| filter_parts(p)).collect();
        let mut plan = Plan {
            dirs: Vec::new(),
            files: Vec::new(),
            links: Vec::new(),
            symlinks: Vec::new(),
        };
        let mut matched = vec![false; filters.len()];
        let mut hardlinks: HashMap<(u64, u64), PathBuf> = HashMap::new();
        self.plan_tree(
            &snapshot.tree,
            &mut Vec::new(),
            &filters,
            &mut matched,
            &mut plan,
            &mut hardlinks,
        )?;
        if let Some(i) = matched.iter().position(|m| !m) {
            return Err(Error::PathNotInSnapshot(
                options.paths[i].display().to_string(),
            ));
        }

        std::fs::create_dir_all(target).ctx("create restore target", target)?;
        for (rel, _) in &plan.dirs {
            make_dir(&target.join(rel), options.overwrite)?;
        }
        summary.dirs = plan.dirs.len() as u64;

        let root = Owner::current();
        let mut warned_owner = false;
        // File metadata is set by the writer threads through the open file, right after
        // the content: on a tree of many small files that halves the syscalls and runs
        // them in parallel.
        let meta = MetaSink {
            me: root,
            warned_owner: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
        };
        summary.bytes = self.write_files(&plan.files, target, options, &meta, progress, started)?;
        warned_owner |= meta.warned_owner.into_inner();
        summary
            .warnings
            .extend(meta.warnings.into_inner().unwrap_or_default());
        for (rel, first) in &plan.links {
            let path = target.join(rel);
            remove_existing(&path, options.overwrite)?;
            std::fs::hard_link(target.join(first), &path).ctx("create hardlink", &path)?;
        }
        summary.files = (plan.files.len() + plan.links.len()) as u64;
        for (rel, node) in &plan.symlinks {
            let path = target.join(rel);
            remove_existing(&path, options.overwrite)?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&node.target), &path)
                .ctx("create symlink", &path)?;
            if root.is_root() {
                std::os::unix::fs::lchown(&path, Some(node.uid), Some(node.gid))
                    .ctx("set owner of", &path)?;
            }
            let t = mtime(node);
            filetime::set_symlink_file_times(&path, t, t).ctx("set mtime of", &path)?;
        }
        summary.symlinks = plan.symlinks.len() as u64;
        for (rel, node) in plan.dirs.iter().rev() {
            let path = target.join(rel);
            set_meta(&path, node, root, &mut warned_owner, &mut summary.warnings)?;
        }
        // Services are restarted on restored data: make it durable. One syncfs is much
        // cheaper than an fsync per file.
        let dir = std::fs::File::open(target).ctx("open restore target", target)?;
        nix::unistd::syncfs(&dir)
            .map_err(|e| Error::io("sync the filesystem of", target, e.into()))?;
        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    /// Walks a tree, validating names and collecting what to restore.
    fn plan_tree(
        &self,
        tree_id: &Id,
        rel: &mut Vec<Vec<u8>>,
        filters: &[Vec<Vec<u8>>],
        matched: &mut [bool],
        plan: &mut Plan,
        hardlinks: &mut HashMap<(u64, u64), PathBuf>,
    ) -> Result<()> {
        let dir_path = to_path(rel);
        let tree = self.read_tree(tree_id, &format!("directory /{}", dir_path.display()))?;
        let mut seen = HashSet::new();
        for node in tree.nodes {
            check_name(&node.name, &dir_path)?;
            if !seen.insert(node.name.clone()) {
                return Err(Error::UnsafeName {
                    name: format!("{} (twice)", String::from_utf8_lossy(&node.name)),
                    dir: format!("/{}", dir_path.display()),
                });
            }
            rel.push(node.name.clone());
            // Included if no filters, or the path is under a filter (all of it), or on
            // the way to one (just the directory).
            let mut under = filters.is_empty();
            let mut on_way = false;
            for (i, f) in filters.iter().enumerate() {
                if rel.starts_with(f) {
                    under = true;
                    if rel.len() == f.len() {
                        matched[i] = true;
                    }
                } else if f.starts_with(rel) {
                    on_way = true;
                }
            }
            if under || on_way {
                let path = to_path(rel);
                match node.kind {
                    NodeKind::Dir => {
                        let sub = node.subtree;
                        plan.dirs.push((path, node));
                        if let Some(sub) = sub {
                            self.plan_tree(&sub, rel, filters, matched, plan, hardlinks)?;
                        }
                    }
                    _ if !under => {}
                    NodeKind::File => {
                        if node.nlink > 1 && node.inode != 0 {
                            if let Some(first) = hardlinks.get(&(node.dev, node.inode)) {
                                plan.links.push((path, first.clone()));
                                rel.pop();
                                continue;
                            }
                            hardlinks.insert((node.dev, node.inode), path.clone());
                        }
                        plan.files.push((path, node));
                    }
                    NodeKind::Symlink => plan.symlinks.push((path, node)),
                    NodeKind::Fifo => {}
                }
            }
            rel.pop();
        }
        Ok(())
    }

    /// Writes file contents with `options.threads` threads; returns bytes written.
    fn write_files(
        &self,
        files: &[(PathBuf, Node)],
        target: &Path,
        options: &RestoreOptions,
        meta: &MetaSink,
        progress: &mut dyn FnMut(&RestoreProgress),
        started: Instant,
    ) -> Result<u64> {
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
        let threads = options.threads.max(1);
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for _ in 0..threads {
                handles.push(s.spawn(|| loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&idx) = order.get(i) else { return };
                    let (rel, node) = &files[idx];
                    let path = target.join(rel);
                    match self.write_one(&path, rel, node, options.overwrite, meta, &bytes) {
                        Ok(()) => {
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
        Ok(bytes.load(Ordering::Relaxed))
    }

    fn write_one(
        &self,
        path: &Path,
        rel: &Path,
        node: &Node,
        overwrite: bool,
        meta: &MetaSink,
        bytes: &AtomicU64,
    ) -> Result<()> {
        remove_existing(path, overwrite)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .ctx("create file", path)?;
        let context = format!("file /{}", rel.display());
        let mut pos = 0u64;
        let mut hole = false;
        for id in &node.content {
            let data = self.read_blob(id, &context)?;
            if is_zero(&data) {
                // Leave a hole; set_len below materializes a trailing one.
                f.seek(SeekFrom::Current(data.len() as i64))
                    .ctx("seek in", path)?;
                hole = true;
            } else {
                f.write_all(&data).ctx("write", path)?;
                hole = false;
            }
            pos += data.len() as u64;
            bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        if hole {
            f.set_len(pos).ctx("set length of", path)?;
        }
        meta.set(&f, path, node)
    }
}

/// All zero bytes? (memcmp against a zero block: fast even in debug builds)
fn is_zero(data: &[u8]) -> bool {
    static ZERO: [u8; 4096] = [0; 4096];
    data.chunks(ZERO.len()).all(|c| c == &ZERO[..c.len()])
}

fn to_path(parts: &[Vec<u8>]) -> PathBuf {
    let mut p = PathBuf::new();
    for part in parts {
        p.push(OsStr::from_bytes(part));
    }
    p
}

fn mtime(node: &Node) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Creates a directory, or accepts an existing real directory (never a symlink to one).
fn make_dir(path: &Path, overwrite: bool) -> Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let m = std::fs::symlink_metadata(path).ctx("inspect", path)?;
            if m.file_type().is_dir() {
                Ok(())
            } else if overwrite {
                std::fs::remove_file(path).ctx("remove to replace", path)?;
                std::fs::create_dir(path).ctx("create directory", path)
            } else {
                Err(Error::NotADirectory(path.to_path_buf()))
            }
        }
        Err(e) => Err(Error::io("create directory", path, e)),
    }
}

/// Removes a non-directory in the way when overwriting. Without overwrite the target
/// started empty, so anything in the way makes the later create_new fail, as it should.
fn remove_existing(path: &Path, overwrite: bool) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Err(Error::io(
            "replace directory with a file",
            path,
            std::io::Error::from(std::io::ErrorKind::IsADirectory),
        )),
        Ok(_) if overwrite => std::fs::remove_file(path).ctx("remove to replace", path),
        _ => Ok(()),
    }
}

/// Where writer threads set file metadata, and collect what they could not set.
struct MetaSink {
    me: Owner,
    warned_owner: AtomicBool,
    warnings: Mutex<Vec<String>>,
}

impl MetaSink {
    /// [`set_meta`] through an open file: xattrs, owner, mode, then mtime.
    fn set(&self, f: &std::fs::File, path: &Path, node: &Node) -> Result<()> {
        use xattr::FileExt;
        for (name, value) in &node.xattrs {
            if let Err(e) = f.set_xattr(OsStr::from_bytes(name), value) {
                if let Ok(mut w) = self.warnings.lock() {
                    w.push(format!(
                        "could not set xattr {} on {}: {e}",
                        String::from_utf8_lossy(name),
                        path.display()
                    ));
                }
            }
        }
        if self.me.is_root() {
            std::os::unix::fs::fchown(f, Some(node.uid), Some(node.gid))
                .ctx("set owner of", path)?;
        } else if (node.uid != self.me.uid || node.gid != self.me.gid)
            && !self.warned_owner.swap(true, Ordering::Relaxed)
        {
            if let Ok(mut w) = self.warnings.lock() {
                w.push("not running as root: file owners and groups were not restored".into());
            }
        }
        f.set_permissions(std::fs::Permissions::from_mode(node.mode))
            .ctx("set mode of", path)?;
        let t = mtime(node);
        filetime::set_file_handle_times(f, Some(t), Some(t)).ctx("set mtime of", path)?;
        Ok(())
    }
}

/// Sets xattrs, owner, mode and mtime of a file or directory (in that order: chown
/// clears setuid bits, and mtime must come after the content and xattrs).
fn set_meta(
    path: &Path,
    node: &Node,
    me: Owner,
    warned_owner: &mut bool,
    warnings: &mut Vec<String>,
) -> Result<()> {
    for (name, value) in &node.xattrs {
        if let Err(e) = xattr::set(path, OsStr::from_bytes(name), value) {
            warnings.push(format!(
                "could not set xattr {} on {}: {e}",
                String::from_utf8_lossy(name),
                path.display()
            ));
        }
    }
    if me.is_root() {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))
            .ctx("set owner of", path)?;
    } else if (node.uid != me.uid || node.gid != me.gid) && !*warned_owner {
        *warned_owner = true;
        warnings.push("not running as root: file owners and groups were not restored".into());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode))
        .ctx("set mode of", path)?;
    let t = mtime(node);
    filetime::set_file_times(path, t, t).ctx("set mtime of", path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeySet;
    use crate::format::{BackupStats, BlobKind, Tree};
    use crate::pack::{blob_id, seal, PackWriter};

    fn node(name: &[u8], kind: NodeKind) -> Node {
        Node::bare(name, kind, 0o644, 0)
    }

    /// Stores blobs directly and writes a snapshot with `root` as its tree, the way a
    /// hostile or buggy writer could.
    fn craft(repo: &Repository, blobs: &[(BlobKind, Vec<u8>)], root: Id) -> Snapshot {
        let mut w = PackWriter::new(1 << 20);
        for (kind, data) in blobs {
            w.add(&seal(
                &repo.keys,
                blob_id(&repo.id_key, data),
                *kind,
                data,
                3,
            ));
        }
        let pack = w.flush(&*repo.storage, &repo.keys).unwrap();
        repo.write_index(&[pack]).unwrap();
        repo.refresh().unwrap();
        let snap = Snapshot {
            id: Id::random().to_hex(),
            job: "evil".into(),
            host: "h".into(),
            time_ms: 0,
            parent: None,
            sources: vec![],
            tree: root,
            stats: BackupStats::default(),
        };
        repo.write_snapshot(&snap).unwrap();
        snap
    }

    #[test]
    fn names_that_escape_the_target_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeySet::from_strings(&["cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="]).unwrap();
        let repo = Repository::init(&dir.path().join("repo"), &keys).unwrap();
        let content = b"pwned".to_vec();
        let content_id = blob_id(&repo.id_key, &content);
        for bad in [&b".."[..], b"a/../../x", b".", b"", b"nul\0byte"] {
            let mut file = node(b"escaped", NodeKind::File);
            file.content = vec![content_id];
            file.size = 5;
            let inner = bincode::serialize(&Tree { nodes: vec![file] }).unwrap();
            let inner_id = blob_id(&repo.id_key, &inner);
            // A harmless entry first, so a restore that wrote as it walked would have
            // written something before meeting the bad name.
            let mut ok = node(b"aaa-harmless", NodeKind::File);
            ok.content = vec![content_id];
            ok.size = 5;
            let mut evil = node(bad, NodeKind::Dir);
            evil.subtree = Some(inner_id);
            let root = bincode::serialize(&Tree {
                nodes: vec![ok, evil],
            })
            .unwrap();
            let root_id = blob_id(&repo.id_key, &root);
            let snap = craft(
                &repo,
                &[
                    (BlobKind::Data, content.clone()),
                    (BlobKind::Tree, inner),
                    (BlobKind::Tree, root),
                ],
                root_id,
            );
            let outer = dir.path().join("outer");
            let target = outer.join("target");
            let err = repo
                .restore(
                    &snap,
                    &RestoreOptions {
                        paths: vec![],
                        target: target.clone(),
                        overwrite: false,
                        threads: 1,
                    },
                    &mut |_| {},
                )
                .unwrap_err();
            assert!(matches!(err, Error::UnsafeName { .. }), "{err}");
            let shown = String::from_utf8_lossy(bad).into_owned();
            assert!(err.to_string().contains(&format!("{shown:?}")), "{err}");
            assert!(!outer.exists(), "restore wrote something for {shown:?}");
            assert!(!dir.path().join("escaped").exists());
        }
    }

    #[test]
    fn a_symlinked_directory_in_the_target_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeySet::from_strings(&["cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="]).unwrap();
        let repo = Repository::init(&dir.path().join("repo"), &keys).unwrap();
        let content = b"data".to_vec();
        let content_id = blob_id(&repo.id_key, &content);
        let mut file = node(b"f", NodeKind::File);
        file.content = vec![content_id];
        let sub = bincode::serialize(&Tree { nodes: vec![file] }).unwrap();
        let sub_id = blob_id(&repo.id_key, &sub);
        let mut d = node(b"d", NodeKind::Dir);
        d.mode = 0o755;
        d.subtree = Some(sub_id);
        let root = bincode::serialize(&Tree { nodes: vec![d] }).unwrap();
        let root_id = blob_id(&repo.id_key, &root);
        let snap = craft(
            &repo,
            &[
                (BlobKind::Data, content),
                (BlobKind::Tree, sub),
                (BlobKind::Tree, root),
            ],
            root_id,
        );
        // The target already holds d -> elsewhere (planted symlink).
        let target = dir.path().join("target");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, target.join("d")).unwrap();
        let opts = RestoreOptions {
            paths: vec![],
            target: target.clone(),
            overwrite: false,
            threads: 1,
        };
        assert!(repo.restore(&snap, &opts, &mut |_| {}).is_err());
        let opts = RestoreOptions {
            overwrite: true,
            ..opts
        };
        repo.restore(&snap, &opts, &mut |_| {}).unwrap();
        assert!(!elsewhere.join("f").exists());
        assert!(std::fs::symlink_metadata(target.join("d"))
            .unwrap()
            .file_type()
            .is_dir());
        assert_eq!(std::fs::read(target.join("d/f")).unwrap(), b"data");
    }
}
