//! Checksum manifests of protected paths: every file below a protected path hashed
//! with BLAKE3, compared with the baseline in the catalog's `protected_files`.
//!
//! Content is hashed every time, whatever the size and mtime say: bit rot and a
//! careful intruder both leave the mtime alone. Symbolic links are not followed; a
//! link's target is what is hashed. A file that cannot be read is recorded with why,
//! so a file that becomes unreadable is a change too.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use drd_core::catalog::{Catalog, CatalogError};
use rusqlite::params;
use tokio_util::sync::CancellationToken;

/// One file as hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time.
    pub mtime_ms: i64,
    /// `blake3:HEX`, `link:HEX` (of the target) or `unreadable: WHY`.
    pub hash: String,
}

/// Files by path.
pub type Manifest = BTreeMap<String, FileState>;

/// How the files under a protected path differ from their baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Other content.
    pub changed: Vec<String>,
    /// Not in the baseline.
    pub added: Vec<String>,
    /// In the baseline, gone now.
    pub removed: Vec<String>,
}

impl Changes {
    /// No change at all.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }

    /// Every path, one per line: what the `expected_change` hook reads.
    pub fn paths(&self) -> String {
        let mut all: Vec<&String> = self
            .changed
            .iter()
            .chain(&self.added)
            .chain(&self.removed)
            .collect();
        all.sort();
        all.iter().map(|p| format!("{p}\n")).collect()
    }

    /// `changed: /a, /b; new: /c; removed: /d`, at most 20 names per kind.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (what, list) in [
            ("changed", &self.changed),
            ("new", &self.added),
            ("removed", &self.removed),
        ] {
            if list.is_empty() {
                continue;
            }
            let mut names = list.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
            if list.len() > 20 {
                names.push_str(&format!(" and {} more", list.len() - 20));
            }
            parts.push(format!("{what}: {names}"));
        }
        parts.join("; ")
    }

    /// How many files changed in any way.
    pub fn count(&self) -> usize {
        self.changed.len() + self.added.len() + self.removed.len()
    }
}

/// Hashes every file at or below `root`. A missing root is an error (nothing to
/// baseline); a root that vanishes after its baseline shows as files removed, so
/// the caller decides which applies.
pub fn scan(root: &Path, cancel: &CancellationToken) -> Result<Manifest, String> {
    let meta = std::fs::symlink_metadata(root)
        .map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    let mut manifest = Manifest::new();
    let mut stack = vec![(root.to_path_buf(), meta)];
    while let Some((path, meta)) = stack.pop() {
        if cancel.is_cancelled() {
            return Err("drd is stopping".to_owned());
        }
        let kind = meta.file_type();
        if kind.is_dir() {
            let entries = match std::fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(err) => {
                    manifest.insert(shown(&path), unreadable(&meta, &err));
                    continue;
                }
            };
            for entry in entries.flatten() {
                if let Ok(meta) = entry.metadata() {
                    stack.push((entry.path(), meta));
                }
            }
        } else if kind.is_file() || kind.is_symlink() {
            let state = match hash(&path, kind.is_symlink()) {
                Ok(hash) => FileState {
                    size: meta.len(),
                    mtime_ms: mtime_ms(&meta),
                    hash,
                },
                Err(err) => unreadable(&meta, &err),
            };
            manifest.insert(shown(&path), state);
        }
    }
    Ok(manifest)
}

fn hash(path: &Path, symlink: bool) -> std::io::Result<String> {
    if symlink {
        let target = std::fs::read_link(path)?;
        return Ok(format!(
            "link:{}",
            blake3::hash(target.as_os_str().as_bytes()).to_hex()
        ));
    }
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("blake3:{}", hasher.finalize().to_hex()))
}

fn unreadable(meta: &std::fs::Metadata, err: &std::io::Error) -> FileState {
    FileState {
        size: meta.len(),
        mtime_ms: mtime_ms(meta),
        hash: format!("unreadable: {err}"),
    }
}

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

fn shown(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// What differs between `baseline` and `now`. Only content counts: a file touched
/// but unchanged is not a change.
pub fn diff(baseline: &Manifest, now: &Manifest) -> Changes {
    let mut changes = Changes::default();
    for (path, state) in now {
        match baseline.get(path) {
            None => changes.added.push(path.clone()),
            Some(old) if old.hash != state.hash || old.size != state.size => {
                changes.changed.push(path.clone());
            }
            Some(_) => {}
        }
    }
    for path in baseline.keys() {
        if !now.contains_key(path) {
            changes.removed.push(path.clone());
        }
    }
    changes
}

/// The bounds of the rows at or below `root`: the root itself, and paths between
/// `root/` and `root0` (`0` sorts right after `/`).
fn bounds(root: &Path) -> (String, String, String) {
    let root = shown(root).trim_end_matches('/').to_owned();
    (root.clone(), format!("{root}/"), format!("{root}0"))
}

/// The baseline of the files at or below `root`.
pub async fn baseline(catalog: &Catalog, root: &Path) -> Result<Manifest, CatalogError> {
    let (exact, low, high) = bounds(root);
    catalog
        .call("read protected files", move |c| {
            let mut stmt = c.prepare(
                "SELECT path, size, mtime_ms, hash FROM protected_files
                 WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
            )?;
            let rows = stmt.query_map(params![exact, low, high], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    FileState {
                        size: r.get::<_, i64>(1)? as u64,
                        mtime_ms: r.get(2)?,
                        hash: r.get(3)?,
                    },
                ))
            })?;
            rows.collect()
        })
        .await
}

/// Makes `manifest` the baseline of `root` (replacing what was there), or removes
/// the baseline when `manifest` is `None`.
pub async fn set_baseline(
    catalog: &Catalog,
    root: &Path,
    manifest: Option<Manifest>,
    now_ms: i64,
) -> Result<(), CatalogError> {
    let (exact, low, high) = bounds(root);
    catalog
        .call("write protected files", move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM protected_files WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
                params![exact, low, high],
            )?;
            {
                let mut put = tx.prepare(
                    "INSERT INTO protected_files (path, size, mtime_ms, hash, seen_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (path, state) in manifest.iter().flatten() {
                    put.execute(params![
                        path,
                        state.size as i64,
                        state.mtime_ms,
                        state.hash,
                        now_ms
                    ])?;
                }
            }
            tx.commit()
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_changes_new_and_removed_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bin");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a"), "one").unwrap();
        std::fs::write(root.join("sub/b"), "two").unwrap();
        std::fs::write(root.join("c"), "three").unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let cancel = CancellationToken::new();
        let before = scan(&root, &cancel).unwrap();
        assert_eq!(before.len(), 4, "{before:?}");

        // Touched but unchanged is no change.
        std::fs::write(root.join("c"), "three").unwrap();
        assert!(diff(&before, &scan(&root, &cancel).unwrap()).is_empty());

        std::fs::write(root.join("a"), "ONE").unwrap();
        std::fs::write(root.join("new"), "x").unwrap();
        std::fs::remove_file(root.join("sub/b")).unwrap();
        std::fs::remove_file(root.join("link")).unwrap();
        std::os::unix::fs::symlink("c", root.join("link")).unwrap();
        let changes = diff(&before, &scan(&root, &cancel).unwrap());
        let p = |name: &str| root.join(name).display().to_string();
        assert_eq!(changes.changed, [p("a"), p("link")]);
        assert_eq!(changes.added, [p("new")]);
        assert_eq!(changes.removed, [p("sub/b")]);
        assert_eq!(changes.count(), 4);
        assert!(changes
            .describe()
            .contains(&format!("removed: {}", p("sub/b"))));
        assert_eq!(changes.paths().lines().count(), 4);
    }

    #[test]
    fn a_missing_root_is_an_error_and_a_single_file_is_its_own_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        assert!(scan(&dir.path().join("nope"), &cancel)
            .unwrap_err()
            .contains("No such file"));
        let file = dir.path().join("drd.toml");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(scan(&file, &cancel).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn baselines_of_roots_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        let state = |hash: &str| FileState {
            size: 1,
            mtime_ms: 2,
            hash: hash.to_owned(),
        };
        let etc: Manifest = [("/etc/app/a".to_owned(), state("1"))].into();
        let etc2: Manifest = [("/etc/app2/b".to_owned(), state("2"))].into();
        set_baseline(&catalog, Path::new("/etc/app"), Some(etc.clone()), 5)
            .await
            .unwrap();
        set_baseline(&catalog, Path::new("/etc/app2"), Some(etc2.clone()), 5)
            .await
            .unwrap();
        assert_eq!(
            baseline(&catalog, Path::new("/etc/app")).await.unwrap(),
            etc
        );
        set_baseline(&catalog, Path::new("/etc/app"), None, 6)
            .await
            .unwrap();
        assert!(baseline(&catalog, Path::new("/etc/app/"))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            baseline(&catalog, Path::new("/etc/app2")).await.unwrap(),
            etc2
        );
    }
}
