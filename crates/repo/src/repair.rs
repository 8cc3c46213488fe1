//! Repair: rebuild the index from the packs, as restic's `repair index` does.
//!
//! Each pack ends in an encrypted header that lists its blobs, so the index is a copy
//! of what the packs already say. When an index file is damaged (or lost), every pack
//! that no readable index file lists is read by its header and written into one new
//! index file; only then are the damaged index files removed. Readable index files are
//! left as they are: they still locate the blobs of a pack whose own header is damaged.
//!
//! Crash safety is the order of the writes: a kill before the new index file is in
//! place changes nothing; a kill after it leaves the damaged files next to a whole
//! index (reads skip them as before, verify still names them, and the next repair
//! removes them). No step removes anything that a whole index does not cover.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::pack::pack_name;
use crate::repo::Repository;

/// What [`Repository::repair_index`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairSummary {
    /// Damaged index files removed (paths or URLs), with why each was damaged.
    pub index_files_removed: Vec<(String, String)>,
    /// The new index file (path or URL), when one was written.
    pub index_file_written: Option<String>,
    /// Packs written into it: those no readable index file listed, read by their
    /// headers.
    pub packs_indexed: u64,
    /// Blobs in those packs.
    pub blobs_indexed: u64,
    /// Packs no readable index file lists whose header does not decrypt either (paths
    /// or URLs, with why): left in place, not indexed; verify reports them.
    pub unreadable_packs: Vec<(String, String)>,
    /// Stale locks broken and similar notes.
    pub warnings: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl RepairSummary {
    /// True when the repair found nothing to do.
    pub fn is_noop(&self) -> bool {
        self.index_files_removed.is_empty()
            && self.index_file_written.is_none()
            && self.unreadable_packs.is_empty()
    }
}

impl Repository {
    /// Rebuilds the index from the pack headers: writes one new index file for every
    /// pack that no readable index file lists, then removes the index files that do
    /// not decrypt or decode. Holds the exclusive lock. A repository with a whole
    /// index is left unchanged.
    pub fn repair_index(&self) -> Result<RepairSummary> {
        let started = Instant::now();
        let mut summary = RepairSummary::default();
        let _lock = self.lock(true, &mut summary.warnings)?;
        let index = self.load_index(true)?;
        for (id, reason) in &index.unreadable_packs {
            summary.unreadable_packs.push((
                self.storage.describe(&pack_name(id)).display().to_string(),
                reason.clone(),
            ));
        }
        // The new index first: until it is durable, the damaged files stay.
        summary.packs_indexed = index.recovered_packs.len() as u64;
        summary.blobs_indexed = index
            .recovered_packs
            .iter()
            .map(|p| p.entries.len() as u64)
            .sum();
        // One file, whatever its size: the summary names it, and repair is rare.
        if !index.recovered_packs.is_empty() {
            let name = self.write_index_file(&index.recovered_packs)?;
            summary.index_file_written = Some(
                self.storage
                    .describe(&format!("index/{name}"))
                    .display()
                    .to_string(),
            );
        }
        for (name, reason) in &index.damaged {
            let rel = format!("index/{name}");
            self.storage.remove(&rel)?;
            summary.index_files_removed.push((
                self.storage.describe(&rel).display().to_string(),
                reason.clone(),
            ));
        }
        self.refresh()?;
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::crypto::KeySet;
    use crate::storage::{LocalDir, Storage};
    use crate::{BackupOptions, BackupPlan, RepoOptions, Source, VerifyOptions};

    /// A local directory whose removals can be made to fail, to stop a repair at the
    /// point a kill would.
    struct Flaky {
        inner: LocalDir,
        fail_removes: AtomicBool,
    }

    impl Storage for Flaky {
        fn location(&self) -> std::path::PathBuf {
            self.inner.location()
        }
        fn describe(&self, name: &str) -> std::path::PathBuf {
            self.inner.describe(name)
        }
        fn read(&self, name: &str) -> Result<Vec<u8>> {
            self.inner.read(name)
        }
        fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
            self.inner.read_at(name, offset, len)
        }
        fn size(&self, name: &str) -> Result<Option<u64>> {
            self.inner.size(name)
        }
        fn write_atomic(&self, name: &str, data: &[u8]) -> Result<()> {
            self.inner.write_atomic(name, data)
        }
        fn stage(&self, dir: &str) -> Result<Box<dyn crate::Staged>> {
            self.inner.stage(dir)
        }
        fn unfinished(&self, dir: &str) -> Result<Vec<(String, u64)>> {
            self.inner.unfinished(dir)
        }
        fn list(&self, dir: &str) -> Result<Vec<String>> {
            self.inner.list(dir)
        }
        fn remove(&self, name: &str) -> Result<()> {
            if name.starts_with("index/") && self.fail_removes.load(Ordering::SeqCst) {
                return Err(crate::Error::Internal("killed".into()));
            }
            self.inner.remove(name)
        }
    }

    fn index_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out: Vec<_> = std::fs::read_dir(dir.join("index"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_repair_stopped_after_the_new_index_loses_nothing_and_the_next_one_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeySet::from_strings(&["cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="]).unwrap();
        let root = dir.path().join("repo");
        Repository::init(&root, &keys).unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a"), vec![7u8; 100_000]).unwrap();
        let flaky = Arc::new(Flaky {
            inner: LocalDir::new(&root),
            fail_removes: AtomicBool::new(true),
        });
        let repo = Repository::open_on(flaky.clone(), &keys, RepoOptions::default()).unwrap();
        let plan = BackupPlan {
            job: "t".into(),
            host: None,
            parent: None,
            sources: vec![Source::Path {
                root: src,
                excludes: vec![],
            }],
        };
        repo.backup(plan, &BackupOptions::default(), &mut |_| {})
            .unwrap();
        let [damaged] = index_files(&root).try_into().unwrap();
        let mut bytes = std::fs::read(&damaged).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&damaged, bytes).unwrap();

        // "Killed" between writing the new index and removing the damaged one.
        assert!(repo.repair_index().is_err());
        assert_eq!(index_files(&root).len(), 2);
        let structure = VerifyOptions {
            read_data: true,
            ..VerifyOptions::default()
        };
        let report = repo.verify(&structure, &mut |_| {}).unwrap();
        assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
        assert!(matches!(
            report.problems[0],
            crate::Problem::BadIndex { .. }
        ));
        assert!(report.reclaimable_packs.is_empty(), "{report:?}");

        // The next run finishes: nothing new to index, the damaged file goes.
        flaky.fail_removes.store(false, Ordering::SeqCst);
        let summary = repo.repair_index().unwrap();
        assert_eq!(summary.packs_indexed, 0, "{summary:?}");
        assert_eq!(summary.index_files_removed.len(), 1, "{summary:?}");
        assert!(!damaged.exists());
        assert!(repo.verify(&structure, &mut |_| {}).unwrap().is_ok());
        assert!(repo.repair_index().unwrap().is_noop());
    }
}
