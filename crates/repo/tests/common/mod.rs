//! Shared helpers for the repository tests: keys, repositories and tree comparison.

#![allow(dead_code)]

// One moto helper for the engine's tests and the daemon's integration tests.
#[path = "../../../../tests/support/moto.rs"]
pub mod moto;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use drd_repo::{
    generate_key_file, BackupOptions, BackupPlan, BackupSummary, Id, KeySet, Repository,
    RestoreOptions, RestoreSummary, Snapshot, Source,
};
use rand::RngCore;

/// A temp dir with a key file and an initialised repository.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key_path: PathBuf,
    pub keys: KeySet,
    pub repo: Repository,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("main.key");
        generate_key_file(&key_path).unwrap();
        let keys = KeySet::load(std::slice::from_ref(&key_path)).unwrap();
        let repo = Repository::init(&dir.path().join("repo"), &keys).unwrap();
        Fixture {
            dir,
            key_path,
            keys,
            repo,
        }
    }

    pub fn repo_path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// A fresh directory inside the fixture.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn backup(&self, root: &Path, parent: Option<&str>) -> BackupSummary {
        let plan = BackupPlan {
            job: "test".into(),
            host: None,
            parent: parent.map(str::to_string),
            sources: vec![Source::Path {
                root: root.to_path_buf(),
                excludes: vec![],
            }],
        };
        self.repo
            .backup(plan, &BackupOptions::default(), &mut |_| {})
            .unwrap()
    }
}

/// Restores all of `snapshot` into `target` (which must be empty or missing).
pub fn restore_all(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &Path,
) -> drd_repo::Result<RestoreSummary> {
    let options = RestoreOptions {
        paths: vec![],
        target: target.to_path_buf(),
        overwrite: false,
        threads: 2,
        beneath: None,
    };
    repo.restore(snapshot, &options, &mut |_| {})
}

/// Damages `blob` where it lies in its pack: XORs `mask` into its middle byte.
pub fn flip_byte_in_blob(repo: &Repository, blob: &Id, mask: u8) {
    use std::os::unix::fs::FileExt;
    let (pack, offset, len) = repo.blob_location(blob).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pack)
        .unwrap();
    let at = offset + u64::from(len) / 2;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ mask], at).unwrap();
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// Where a source root ends up below a restore target.
pub fn restored(target: &Path, root: &Path) -> PathBuf {
    target.join(root.strip_prefix("/").unwrap())
}

/// Everything a restore must reproduce about one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub mtime_ns: i64,
    pub content: Option<Vec<u8>>,
    pub target: Option<OsString>,
    pub xattrs: Vec<(OsString, Vec<u8>)>,
    pub size: u64,
}

/// Describes a tree: relative path -> entry, plus hardlink groups (paths sharing an inode).
pub fn describe(root: &Path) -> (BTreeMap<PathBuf, Entry>, Vec<Vec<PathBuf>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    let groups = inodes.into_values().filter(|g| g.len() > 1).collect();
    (out, groups)
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<PathBuf, Entry>,
    inodes: &mut BTreeMap<u64, Vec<PathBuf>>,
) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let m = std::fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
            "fifo"
        } else {
            "file"
        };
        let mut xattrs = Vec::new();
        if !ft.is_symlink() {
            if let Ok(list) = xattr::list(&path) {
                for n in list {
                    if let Ok(Some(v)) = xattr::get(&path, &n) {
                        xattrs.push((n, v));
                    }
                }
            }
        }
        xattrs.sort();
        let entry = Entry {
            kind,
            mode: if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            },
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            content: ft.is_file().then(|| std::fs::read(&path).unwrap()),
            target: ft
                .is_symlink()
                .then(|| std::fs::read_link(&path).unwrap().into_os_string()),
            xattrs,
            size: if ft.is_dir() { 0 } else { m.len() },
        };
        if ft.is_file() && m.nlink() > 1 {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        out.insert(rel, entry);
        if ft.is_dir() {
            walk(root, &path, out, inodes);
        }
    }
}

/// True if the filesystem under `dir` stores user xattrs.
pub fn xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    std::fs::write(&probe, b"").unwrap();
    let ok = xattr::set(&probe, "user.drd_probe", b"1").is_ok();
    std::fs::remove_file(&probe).unwrap();
    ok
}
