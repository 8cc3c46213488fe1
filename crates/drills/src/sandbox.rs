//! The sandbox: the one place drills write. Each drill gets a fresh folder of its own
//! below the sandbox root (mode 0700), refused up front when what it would restore
//! does not fit in the free space minus the headroom, and removed when the drill is
//! done, on every path (the guard's `Drop`), including folders a restore left
//! read-only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The sandbox root for one drill run.
#[derive(Clone)]
pub(crate) struct Sandbox {
    root: PathBuf,
    headroom: u64,
    next: Arc<AtomicU64>,
}

/// One drill's folder, removed on drop.
#[derive(Debug)]
pub(crate) struct SandboxDir {
    path: PathBuf,
}

impl Sandbox {
    /// The root `root` (made if missing, mode 0700), leaving `headroom_mib` free.
    /// Folders a killed drd left there are removed first.
    pub fn prepare(root: &Path, headroom_mib: u64) -> Result<Sandbox, String> {
        std::fs::create_dir_all(root)
            .and_then(|()| std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| {
                format!(
                    "cannot make the drill sandbox {}: {e}; make it writable by drd's user \
                     or set [drills] sandbox to a folder that is",
                    root.display()
                )
            })?;
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                remove_all(&entry.path());
            }
        }
        Ok(Sandbox {
            root: root.to_owned(),
            headroom: headroom_mib.saturating_mul(1 << 20),
            next: Arc::default(),
        })
    }

    /// A fresh folder for a drill that will write about `need` bytes, named after
    /// `label`; refused, saying how much is missing, when that would leave less than
    /// the headroom free.
    pub fn dir(&self, label: &str, need: u64) -> Result<SandboxDir, String> {
        let free = free_bytes(&self.root)
            .map_err(|e| format!("cannot read the free space of {}: {e}", self.root.display()))?;
        if need.saturating_add(self.headroom) > free {
            return Err(format!(
                "not enough space in the drill sandbox {}: the restore needs {} and {} must \
                 stay free, but only {} is; free space there or set [drills] sandbox to a \
                 larger filesystem",
                self.root.display(),
                drd_proto::text::bytes(need),
                drd_proto::text::bytes(self.headroom),
                drd_proto::text::bytes(free)
            ));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let safe: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.root.join(format!("{n:03}-{safe}"));
        std::fs::create_dir(&path).map_err(|e| format!("cannot make {}: {e}", path.display()))?;
        Ok(SandboxDir { path })
    }

    /// The root.
    #[cfg(test)]
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl SandboxDir {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SandboxDir {
    fn drop(&mut self) {
        remove_all(&self.path);
    }
}

fn free_bytes(path: &Path) -> nix::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path)?;
    Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

/// Removes `path` and everything below it, first making folders a restore left
/// without write or search permission usable again; it never follows a symlink.
fn remove_all(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                remove_all(&entry.path());
            }
        }
        if let Err(err) = std::fs::remove_dir(path) {
            tracing::warn!(path = %path.display(), cause = %err, "cannot remove a drill's sandbox folder");
        }
    } else if let Err(err) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), cause = %err, "cannot remove a drill's file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_folder_is_removed_even_when_the_restore_left_it_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::prepare(&tmp.path().join("drills"), 0).unwrap();
        let dir = sandbox.dir("job app", 1).unwrap();
        let locked = dir.path().join("etc");
        std::fs::create_dir(&locked).unwrap();
        std::fs::write(locked.join("f"), b"x").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(sandbox.root()).unwrap().count(), 0);
    }

    #[test]
    fn a_restore_that_would_eat_the_headroom_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::prepare(tmp.path(), 1).unwrap();
        let err = sandbox.dir("huge", u64::MAX / 2).unwrap_err();
        assert!(err.contains("not enough space"), "{err}");
        assert!(err.contains("[drills] sandbox"), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
