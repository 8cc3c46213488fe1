//! Checking a restore against the snapshot: every regular file the snapshot holds (or
//! the part a restore's `paths` chose) is read back from the target and cut at the
//! plaintext lengths of its content blobs; each piece must hash to its blob id, keyed
//! as the backup keyed it, and the file must have the snapshot's size. This is what a
//! recovery drill trusts: not that the restore said it wrote the bytes, but that the
//! bytes on disk are the ones backed up.
//!
//! The snapshot's trees are walked by the restore's own plan, so the check sees the
//! very files (and hardlinks) the restore made.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::fallback::Reader;
use super::plan::Filters;
use crate::error::{Error, Result};
use crate::format::{Node, Snapshot};
use crate::pack::blob_id;
use crate::repo::Repository;

/// A restored file that does not hold what the snapshot says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Its path inside the snapshot ("/var/lib/app/db").
    pub path: String,
    /// What differs.
    pub reason: String,
}

/// What [`Repository::check_restored`] found.
#[derive(Debug, Clone, Default)]
pub struct CheckSummary {
    /// Regular files checked (hardlinks included).
    pub files: u64,
    /// Content bytes read and hashed.
    pub bytes: u64,
    /// Files that differ from the snapshot, missing ones included, by path.
    pub mismatches: Vec<Mismatch>,
}

impl CheckSummary {
    /// True when every file matched.
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl Repository {
    /// Checks what a restore of `snapshot` (limited to `paths`, as in
    /// [`crate::RestoreOptions::paths`]; empty = all) wrote under `target`: every
    /// regular file against the snapshot's blob ids and size. A folder whose listing
    /// cannot be read counts as a mismatch. An error means the check itself could not
    /// run (the snapshot's root cannot be read, a path is not in it).
    pub fn check_restored(
        &self,
        snapshot: &Snapshot,
        paths: &[PathBuf],
        target: &Path,
    ) -> Result<CheckSummary> {
        let mut filters = Filters::new(paths);
        let reader = Reader::new(self);
        let plan = reader.plan(&snapshot.tree, &mut filters)?;
        if let Some(i) = filters.unmatched() {
            return Err(Error::PathNotInSnapshot(paths[i].display().to_string()));
        }
        let mut summary = CheckSummary::default();
        summary
            .mismatches
            .extend(plan.damaged.into_iter().map(|d| Mismatch {
                path: d.path,
                reason: d.reason,
            }));
        let nodes: HashMap<&PathBuf, &Node> = plan.files.iter().map(|(p, n)| (p, n)).collect();
        let links = plan
            .links
            .iter()
            .filter_map(|(rel, first)| nodes.get(first).map(|node| (rel, *node)));
        for (rel, node) in plan.files.iter().map(|(p, n)| (p, n)).chain(links) {
            summary.files += 1;
            match self.check_file(&reader, &target.join(rel), node) {
                Ok(bytes) => summary.bytes += bytes,
                Err(reason) => summary.mismatches.push(Mismatch {
                    path: format!("/{}", rel.display()),
                    reason,
                }),
            }
        }
        summary.mismatches.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(summary)
    }

    /// Checks one restored file against `node`; returns the bytes hashed, or what
    /// differs.
    fn check_file(
        &self,
        reader: &Reader<'_>,
        full: &Path,
        node: &Node,
    ) -> std::result::Result<u64, String> {
        let meta = match std::fs::symlink_metadata(full) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("was not restored (no such file in the target)".to_owned())
            }
            Err(e) => return Err(format!("cannot be read: {e}")),
        };
        if !meta.file_type().is_file() {
            return Err("is not a regular file in the target".to_owned());
        }
        if meta.len() != node.size {
            return Err(format!(
                "has {} bytes, the snapshot says {}",
                meta.len(),
                node.size
            ));
        }
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(full)
            .map_err(|e| format!("cannot be opened: {e}"))?;
        let mut file = BufReader::with_capacity(1 << 20, file);
        let mut offset = 0u64;
        let mut piece = Vec::new();
        for (i, id) in node.content.iter().enumerate() {
            let loc = reader.locate(id).ok_or_else(|| {
                format!(
                    "cannot be checked from byte {offset}: its blob {id} (piece {}) is in no \
                     index",
                    i + 1
                )
            })?;
            piece.resize(loc.entry.raw_len as usize, 0);
            file.read_exact(&mut piece)
                .map_err(|e| format!("cannot be read at byte {offset}: {e}"))?;
            if blob_id(&self.id_key, &piece) != *id {
                return Err(format!(
                    "bytes {offset}..{} differ from the snapshot (blob {id})",
                    offset + piece.len() as u64
                ));
            }
            offset += piece.len() as u64;
        }
        if offset != node.size {
            return Err(format!(
                "its blobs hold {offset} bytes, the snapshot says {}",
                node.size
            ));
        }
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{BackupOptions, BackupPlan, Source};
    use crate::crypto::KeySet;
    use crate::restore::RestoreOptions;

    fn backed_up(dir: &Path) -> (Repository, Snapshot) {
        let keys = KeySet::from_strings(&["cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="]).unwrap();
        let repo = Repository::init(&dir.join("repo"), &keys).unwrap();
        let data = dir.join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(data.join("sub/big"), &big).unwrap();
        std::fs::write(data.join("small"), b"small file").unwrap();
        std::fs::write(data.join("empty"), b"").unwrap();
        std::fs::hard_link(data.join("small"), data.join("small-link")).unwrap();
        let plan = BackupPlan {
            job: "t".into(),
            host: None,
            parent: None,
            sources: vec![Source::Path {
                root: data,
                excludes: vec![],
            }],
        };
        let summary = repo
            .backup(plan, &BackupOptions::default(), &mut |_| {})
            .unwrap();
        (repo, summary.snapshot)
    }

    fn restore(repo: &Repository, snapshot: &Snapshot, target: &Path) {
        let options = RestoreOptions {
            paths: vec![],
            target: target.to_owned(),
            overwrite: false,
            threads: 2,
            beneath: None,
        };
        repo.restore(snapshot, &options, &mut |_| {}).unwrap();
    }

    #[test]
    fn a_faithful_restore_checks_out_and_one_changed_byte_is_caught_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, snapshot) = backed_up(dir.path());
        let target = dir.path().join("target");
        restore(&repo, &snapshot, &target);

        let summary = repo.check_restored(&snapshot, &[], &target).unwrap();
        assert!(summary.is_ok(), "{:?}", summary.mismatches);
        assert_eq!(summary.files, 4, "big, small, empty and the hardlink");
        assert_eq!(summary.bytes, 3_000_000 + 2 * 10);

        let big = target
            .join(dir.path().strip_prefix("/").unwrap())
            .join("data/sub/big");
        let mut bytes = std::fs::read(&big).unwrap();
        bytes[2_500_000] ^= 1;
        std::fs::write(&big, &bytes).unwrap();
        let summary = repo.check_restored(&snapshot, &[], &target).unwrap();
        assert_eq!(summary.mismatches.len(), 1, "{:?}", summary.mismatches);
        let found = &summary.mismatches[0];
        assert!(found.path.ends_with("/data/sub/big"), "{found:?}");
        assert!(
            found.reason.contains("differ from the snapshot"),
            "{found:?}"
        );
    }

    #[test]
    fn a_missing_or_resized_file_is_caught_and_paths_limit_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, snapshot) = backed_up(dir.path());
        let target = dir.path().join("target");
        restore(&repo, &snapshot, &target);
        let data = target
            .join(dir.path().strip_prefix("/").unwrap())
            .join("data");
        std::fs::remove_file(data.join("small-link")).unwrap();
        std::fs::write(data.join("empty"), b"x").unwrap();

        let summary = repo.check_restored(&snapshot, &[], &target).unwrap();
        let shown: Vec<String> = summary
            .mismatches
            .iter()
            .map(|m| format!("{} {}", m.path, m.reason))
            .collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].contains("/data/empty has 1 bytes"), "{shown:?}");
        assert!(
            shown[1].contains("/data/small-link was not restored"),
            "{shown:?}"
        );

        let only = dir.path().join("data/sub");
        let summary = repo.check_restored(&snapshot, &[only], &target).unwrap();
        assert!(summary.is_ok(), "{:?}", summary.mismatches);
        assert_eq!(summary.files, 1);
        let err = repo
            .check_restored(&snapshot, &[PathBuf::from("/not/there")], &target)
            .unwrap_err();
        assert!(matches!(err, Error::PathNotInSnapshot(_)), "{err}");
    }
}
