//! Shared helpers for the repository tests: keys, repositories, restore options, seeded
//! random inputs and tree comparison.

#![allow(dead_code)]

// One moto helper, one gate for real parts and one way to find and damage repository
// files for the engine's tests and the daemon's integration tests.
#[path = "../../../../tests/support/moto.rs"]
pub mod moto;

// Each test crate uses a part of these.
#[path = "../../../../tests/support/real_parts.rs"]
mod real_parts;
#[allow(unused_imports)]
pub use real_parts::{real_part_missing, real_parts_required};

#[path = "../../../../tests/support/files.rs"]
mod files;
#[allow(unused_imports)]
pub use files::{
    files_under, flip_byte, flip_middle_byte, index_files, packs, rename_damaged_copy_over,
};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::cell::RefCell;
use std::sync::Arc;

use drd_repo::{
    generate_key_file, BackupOptions, BackupPlan, BackupSummary, Id, KeySet, LocalDir, Repository,
    RestoreOptions, RestoreSummary, Snapshot, Source, Storage, VerifyOptions,
};
use rand::{RngCore, SeedableRng};

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

    /// The repository opened anew from its folder with only the key file.
    pub fn reopen(&self) -> Repository {
        let keys = KeySet::load(std::slice::from_ref(&self.key_path)).unwrap();
        Repository::open(&self.repo_path(), &keys).unwrap()
    }

    /// A directory tier at `DIR/NAME` to replicate to or fall back on.
    pub fn local_tier(&self, name: &str) -> Arc<dyn Storage> {
        Arc::new(LocalDir::new(&self.dir.path().join(name)))
    }

    /// The pack that holds the first blob of the file at `path` in `snapshot`.
    pub fn pack_of_first_blob(&self, snapshot: &Snapshot, path: &Path) -> PathBuf {
        let blobs = self
            .repo
            .file_blobs(snapshot, path.to_str().unwrap())
            .unwrap();
        self.repo.blob_location(&blobs[0]).unwrap().0
    }

    /// Backs up the folder `root` as job `test`, on `parent` if given.
    pub fn backup(&self, root: &Path, parent: Option<&str>) -> BackupSummary {
        let mut plan = path_plan("test", root);
        plan.parent = parent.map(str::to_string);
        self.run(plan).unwrap()
    }

    /// Runs `plan` with the default options.
    pub fn run(&self, plan: BackupPlan) -> drd_repo::Result<BackupSummary> {
        self.repo
            .backup(plan, &BackupOptions::default(), &mut |_| {})
    }
}

/// A plan that backs up the folder `root` (nothing excluded) as `job`, with no parent.
pub fn path_plan(job: &str, root: &Path) -> BackupPlan {
    BackupPlan {
        job: job.into(),
        host: None,
        parent: None,
        sources: vec![Source::Path {
            root: root.to_path_buf(),
            excludes: vec![],
        }],
    }
}

/// Options that restore a whole snapshot into `target` (which must be empty or
/// missing) with two threads; change a field with `..restore_options(target)`.
pub fn restore_options(target: &Path) -> RestoreOptions {
    RestoreOptions {
        paths: vec![],
        target: target.to_path_buf(),
        overwrite: false,
        threads: 2,
        beneath: None,
    }
}

/// Restores all of `snapshot` into `target` (which must be empty or missing).
pub fn restore_all(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &Path,
) -> drd_repo::Result<RestoreSummary> {
    repo.restore(snapshot, &restore_options(target), &mut |_| {})
}

/// Verify options that read and check every blob, with two threads.
pub fn read_data() -> VerifyOptions {
    VerifyOptions {
        read_data: true,
        threads: 2,
        ..VerifyOptions::default()
    }
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

/// The environment variable that forces the seed of the random test inputs.
pub const SEED_VAR: &str = "DRD_TEST_SEED";

thread_local! {
    /// This test's stream of random inputs (a test runs on its own thread).
    static INPUTS: RefCell<Option<rand::rngs::StdRng>> = const { RefCell::new(None) };
}

/// `n` random bytes from this test's seeded stream. The seed is `DRD_TEST_SEED` when
/// set, a fresh one otherwise; it is printed at the first use in each test, so a failing
/// run can be repeated with the same inputs (`DRD_TEST_SEED=N cargo nextest run ...`).
pub fn random_bytes(n: usize) -> Vec<u8> {
    INPUTS.with(|inputs| {
        let mut inputs = inputs.borrow_mut();
        let rng = inputs.get_or_insert_with(|| {
            let seed = match std::env::var(SEED_VAR) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{SEED_VAR}={v} is not a u64: {e}")),
                Err(_) => rand::random(),
            };
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("this test");
            eprintln!("random inputs of {test}: {SEED_VAR}={seed}");
            rand::rngs::StdRng::seed_from_u64(seed)
        });
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    })
}

/// Milliseconds since the Unix epoch, as the repository stamps locks and snapshots.
pub fn unix_ms_now() -> i64 {
    i64::try_from(std::time::UNIX_EPOCH.elapsed().unwrap().as_millis()).unwrap()
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
    // By path, not by inode number: a restore makes the files in whatever order its
    // threads reach them.
    let mut groups: Vec<Vec<PathBuf>> = inodes.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
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
