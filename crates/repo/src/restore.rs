//! Restore: plan the whole restore from the snapshot's trees first (`plan.rs`:
//! validating every name, so a crafted tree is refused before anything is written),
//! then create directories, write files in parallel grouped by pack location
//! (`files.rs`), link hardlinks, make FIFOs, create symlinks last, and set directory
//! metadata deepest first.
//!
//! Nothing is written outside the target: stored names may not be empty, ".", "..", or
//! hold '/' or NUL; and every entry is reached from the open target folder without
//! following a symlink at any component, with its metadata set through the open handle
//! (`target.rs`), so a user racing the restore cannot redirect it. Symlinks are created
//! only after all content is written.
//!
//! A blob that cannot be read from any tier damages only the files that need it: they
//! are kept as `NAME.damaged` with their readable parts and listed in
//! [`RestoreSummary::damaged`]; every other file is restored.

mod check;
mod fallback;
mod files;
mod parts;
mod plan;
mod target;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::Snapshot;
use crate::repo::Repository;
use fallback::Reader;
use files::{MetaSink, Owner};
use plan::Filters;
use target::TargetDir;

pub use check::{CheckSummary, Mismatch};

/// The suffix a partly restored file gets, so nothing takes it for the real one.
pub const DAMAGED_SUFFIX: &str = ".damaged";

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
    /// A folder that holds `target`, for callers confined to it: only this folder is
    /// opened as named, and the way from it to `target` is walked without following
    /// symlinks. `None`: `target` is opened as named.
    pub beneath: Option<PathBuf>,
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

/// A file or folder that a restore could not bring back whole, because a blob it
/// needs is missing or damaged on every tier tried.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DamagedFile {
    /// Its path inside the snapshot ("/var/lib/app/db").
    pub path: String,
    /// Where its readable parts were kept (`NAME.damaged` under the target, unreadable
    /// parts left as zeros), if anywhere.
    pub kept_as: Option<PathBuf>,
    /// What could not be read, and why.
    pub reason: String,
}

/// The result of a restore.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RestoreSummary {
    /// Regular files restored whole (hardlinks included).
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
    /// FIFOs (named pipes) made.
    pub fifos: u64,
    /// Files and folders not restored whole, by path. Not empty: the restore is
    /// incomplete, and callers should say so (drctl and `drd restore` exit 1).
    pub damaged: Vec<DamagedFile>,
}

/// Does `err`, met reading a blob, mean the repository lacks or holds a bad copy of it
/// (so the one file that needs it is damaged), rather than that reading failed?
pub(crate) fn is_damage(err: &Error) -> bool {
    match err {
        Error::MissingBlob { .. } | Error::BlobMismatch { .. } | Error::Corrupt { .. } => true,
        Error::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

impl Repository {
    /// Restores a snapshot (or part of it) under `options.target`. Files that a
    /// damaged or missing blob breaks are listed in [`RestoreSummary::damaged`], and
    /// everything else is restored.
    pub fn restore(
        &self,
        snapshot: &Snapshot,
        options: &RestoreOptions,
        progress: &mut dyn FnMut(&RestoreProgress),
    ) -> Result<RestoreSummary> {
        self.restore_below(snapshot, options, None, progress)
    }

    /// Restores the snapshot path `path` (a folder or a file, stored under its absolute
    /// path) back at that same path on this host: putting a job's data back where it
    /// came from. Only `path` and what is below it are written. Its ancestors are
    /// neither made nor changed (their modes, owners and times stay as they are), so
    /// they must exist; they are walked from `/` without following a symlink, like
    /// every restore target. Files in the way are replaced; files that the snapshot
    /// does not hold are left where they are.
    pub fn restore_in_place(
        &self,
        snapshot: &Snapshot,
        path: &Path,
        threads: usize,
        progress: &mut dyn FnMut(&RestoreProgress),
    ) -> Result<RestoreSummary> {
        if !path.is_absolute() || path.parent().is_none() {
            return Err(Error::InvalidOption(format!(
                "restore in place needs an absolute path below /, not {}",
                path.display()
            )));
        }
        let options = RestoreOptions {
            paths: vec![path.to_path_buf()],
            target: PathBuf::from("/"),
            overwrite: true,
            threads,
            beneath: None,
        };
        let below = plan::to_path(&plan::filter_parts(path));
        self.restore_below(snapshot, &options, Some(&below), progress)
    }

    /// [`Repository::restore`], writing only `below` (relative to the target) and what
    /// it holds when given: the folders on the way to it are left alone.
    fn restore_below(
        &self,
        snapshot: &Snapshot,
        options: &RestoreOptions,
        below: Option<&Path>,
        progress: &mut dyn FnMut(&RestoreProgress),
    ) -> Result<RestoreSummary> {
        let started = Instant::now();
        let mut summary = RestoreSummary::default();
        let _lock = self.lock_for_read(&mut summary.warnings)?;
        // Another process may have pruned (moved blobs) since this one read the index.
        self.refresh()?;
        match std::fs::read_dir(&options.target) {
            Ok(mut entries) => {
                if entries.next().is_some() && !options.overwrite {
                    return Err(Error::TargetNotEmpty(options.target.clone()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("list restore target", &options.target, e)),
        }

        let mut filters = Filters::new(&options.paths);
        let reader = Reader::new(self);
        let mut plan = reader.plan(&snapshot.tree, &mut filters)?;
        if let Some(i) = filters.unmatched() {
            return Err(Error::PathNotInSnapshot(
                options.paths[i].display().to_string(),
            ));
        }
        if let Some(below) = below {
            plan.dirs.retain(|(rel, _)| rel.starts_with(below));
        }
        summary.damaged = plan.damaged;

        let target = TargetDir::open(&options.target, options.beneath.as_deref())?;
        for (rel, _) in &plan.dirs {
            target.make_dir(rel, options.overwrite)?;
        }
        summary.dirs = plan.dirs.len() as u64;

        // File metadata is set by the writer threads through the open file, right after
        // the content: on a tree of many small files that halves the syscalls and runs
        // them in parallel.
        let meta = MetaSink::new(Owner::current());
        let written =
            reader.write_files(&plan.files, &target, options, &meta, progress, started)?;
        summary.bytes = written.bytes;
        let broken: HashSet<String> = written.damaged.iter().map(|d| d.path.clone()).collect();
        let mut damaged_files = written.damaged.len();
        summary.damaged.extend(written.damaged);
        for (rel, first) in &plan.links {
            let first_shown = format!("/{}", first.display());
            if broken.contains(&first_shown) {
                damaged_files += 1;
                summary.damaged.push(DamagedFile {
                    path: format!("/{}", rel.display()),
                    kept_as: None,
                    reason: format!("a hardlink of {first_shown}, which is damaged"),
                });
                continue;
            }
            target.hard_link(rel, first, options.overwrite)?;
        }
        summary.files = (plan.files.len() + plan.links.len() - damaged_files) as u64;
        for (rel, node) in &plan.fifos {
            let fifo = target.fifo(rel, options.overwrite)?;
            meta.set(&fifo, &target.full(rel), node)?;
        }
        summary.fifos = plan.fifos.len() as u64;
        let as_root = meta.me.is_root();
        for (rel, node) in &plan.symlinks {
            let t = files::mtime(node);
            let t = nix::sys::time::TimeSpec::new(t.unix_seconds(), i64::from(t.nanoseconds()));
            let owner = as_root.then_some((node.uid, node.gid));
            target.symlink(rel, &node.target, owner, t, options.overwrite)?;
        }
        summary.symlinks = plan.symlinks.len() as u64;
        for (rel, node) in plan.dirs.iter().rev() {
            let dir = target.dir(rel)?;
            meta.set(&dir, &target.full(rel), node)?;
        }
        summary
            .warnings
            .extend(meta.warnings.into_inner().unwrap_or_default());
        // Services are restarted on restored data: make it durable. One syncfs is much
        // cheaper than an fsync per file.
        match below {
            // The target ("/") may be on another filesystem than what was written.
            Some(below) => {
                let written = if plan.dirs.is_empty() {
                    below.parent().unwrap_or(Path::new(""))
                } else {
                    below
                };
                let dir = target.dir(written)?;
                nix::unistd::syncfs(&dir).map_err(|e| {
                    Error::io("sync the filesystem of", target.full(written), e.into())
                })?;
            }
            None => target.sync()?,
        }
        summary.damaged.sort_by(|a, b| a.path.cmp(&b.path));
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeySet;
    use crate::format::{BackupStats, BlobKind, Id, Node, NodeKind, Tree};
    use crate::pack::{blob_id, seal, PackWriter};

    fn node(name: &[u8], kind: NodeKind) -> Node {
        Node::bare(name, kind, 0o644, 0)
    }

    /// Stores blobs directly and writes a snapshot with `root` as its tree, the way a
    /// hostile or buggy writer could.
    fn craft(repo: &Repository, blobs: &[(BlobKind, Vec<u8>)], root: Id) -> Snapshot {
        let mut w = PackWriter::new(&*repo.storage, 1 << 20);
        for (kind, data) in blobs {
            let mut token = Vec::new();
            let id = blob_id(&repo.id_key, data);
            let blob = seal(&repo.keys, id, *kind, data, 3, &mut token);
            w.add(&blob, &token).unwrap();
        }
        let pack = w.flush(&repo.keys).unwrap();
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
                        beneath: None,
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
            beneath: None,
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

    /// In place, the source's own folder gets its files back and keeps what the
    /// snapshot lacks, and the folders above it are not touched.
    #[test]
    fn restore_in_place_writes_only_below_the_path() {
        use std::os::unix::fs::PermissionsExt;

        use crate::backup::{BackupOptions, BackupPlan, Source};

        let dir = tempfile::tempdir().unwrap();
        let keys = KeySet::from_strings(&["cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="]).unwrap();
        let repo = Repository::init(&dir.path().join("repo"), &keys).unwrap();
        let above = dir.path().join("above");
        let data = above.join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("sub/a"), b"original").unwrap();
        let plan = BackupPlan {
            job: "t".into(),
            host: None,
            parent: None,
            sources: vec![Source::Path {
                root: data.clone(),
                excludes: vec![],
            }],
        };
        let summary = repo
            .backup(plan, &BackupOptions::default(), &mut |_| {})
            .unwrap();
        let snap = summary.snapshot;

        std::fs::write(data.join("sub/a"), b"changed").unwrap();
        std::fs::write(data.join("extra"), b"new since").unwrap();
        std::fs::set_permissions(&above, std::fs::Permissions::from_mode(0o711)).unwrap();
        let old = filetime::FileTime::from_unix_time(1_000_000, 0);
        filetime::set_file_mtime(&above, old).unwrap();

        repo.restore_in_place(&snap, &data, 1, &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(data.join("sub/a")).unwrap(), b"original");
        assert_eq!(std::fs::read(data.join("extra")).unwrap(), b"new since");
        let meta = std::fs::metadata(&above).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o711);
        assert_eq!(filetime::FileTime::from_last_modification_time(&meta), old);

        let err = repo
            .restore_in_place(&snap, &dir.path().join("elsewhere"), 1, &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, Error::PathNotInSnapshot(_)), "{err}");
    }
}
