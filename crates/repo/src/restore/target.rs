//! The restore target as an open directory handle.
//!
//! Every file and directory below the target is reached from that handle, component by
//! component, never following a symlink on the way or at the end: `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it, else a walk with
//! `O_NOFOLLOW | O_DIRECTORY` from the handle. Entries are made with the `*at` calls
//! on the opened parent, and modes, owners, times and xattrs are set through the
//! opened entry. A user who can write somewhere inside the target and swaps a folder
//! for a symlink while the restore runs makes the restore fail on that path; they
//! cannot make it write, chmod or chown anything outside the target.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::error::{Error, IoContext, Result};

/// An open restore target.
pub(crate) struct TargetDir {
    root: OwnedFd,
    path: PathBuf,
    /// Cleared once the kernel says it has no `openat2` (before Linux 5.6).
    openat2: AtomicBool,
}

/// Flags for opening a folder on the way: never through a symlink.
fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The names of a relative path made of plain components only (what the plan holds).
fn names(rel: &Path) -> std::result::Result<Vec<&OsStr>, Errno> {
    rel.components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(Errno::EINVAL),
        })
        .collect()
}

fn is_dir(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn kind_is(st: &nix::sys::stat::FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

impl TargetDir {
    /// Opens `target`, creating it (and missing parents) first.
    ///
    /// With `beneath` (a folder that holds `target`), only `beneath` is opened as
    /// named; the rest of the way to `target` is made and walked without following a
    /// symlink, so a caller confined to `beneath` cannot be sent elsewhere by a symlink
    /// planted below it.
    pub fn open(target: &Path, beneath: Option<&Path>) -> Result<TargetDir> {
        let root = match beneath {
            None => {
                std::fs::create_dir_all(target).ctx("create restore target", target)?;
                nix::fcntl::open(
                    target,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Error::io("open restore target", target, e.into()))?
            }
            Some(anchor) => {
                let rest = target.strip_prefix(anchor).map_err(|_| {
                    Error::InvalidOption(format!(
                        "restore target {} is not below {}",
                        target.display(),
                        anchor.display()
                    ))
                })?;
                std::fs::create_dir_all(anchor).ctx("create restore folder", anchor)?;
                let mut dir = nix::fcntl::open(
                    anchor,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Error::io("open restore folder", anchor, e.into()))?;
                let mut at = anchor.to_path_buf();
                for name in names(rest).map_err(|_| {
                    Error::InvalidOption(format!(
                        "restore target {} must not hold '.' or '..'",
                        target.display()
                    ))
                })? {
                    at.push(name);
                    match nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(Error::io("create restore target", &at, e.into())),
                    }
                    dir = nix::fcntl::openat(&dir, name, dir_flags(), Mode::empty())
                        .map_err(|e| walk_error("open restore target", &at, e))?;
                }
                dir
            }
        };
        Ok(TargetDir {
            root,
            path: target.to_path_buf(),
            openat2: AtomicBool::new(true),
        })
    }

    /// The full path of `rel`, for messages.
    pub fn full(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Opens `rel` below the target with `flags`, following no symlink at any
    /// component (the last one included).
    fn open_at(&self, rel: &Path, flags: OFlag, mode: Mode) -> std::result::Result<OwnedFd, Errno> {
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let names = names(rel)?;
        if self.openat2.load(Ordering::Relaxed) {
            let how = OpenHow::new().flags(flags).mode(mode).resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
            let path: &Path = if names.is_empty() {
                Path::new(".")
            } else {
                rel
            };
            match nix::fcntl::openat2(&self.root, path, how) {
                Err(Errno::ENOSYS | Errno::E2BIG) => self.openat2.store(false, Ordering::Relaxed),
                // Some container seccomp profiles answer EPERM for openat2, and a
                // rename racing the lookup gives EAGAIN: the walk below decides both.
                Err(Errno::EPERM | Errno::EAGAIN) => {}
                other => return other,
            }
        }
        let Some((last, dirs)) = names.split_last() else {
            return nix::fcntl::openat(&self.root, ".", flags, mode);
        };
        let mut dir: Option<OwnedFd> = None;
        for name in dirs {
            let at = dir.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
            dir = Some(nix::fcntl::openat(at, *name, dir_flags(), Mode::empty())?);
        }
        let at = dir.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
        nix::fcntl::openat(at, *last, flags, mode)
    }

    /// The open parent folder of `rel` and the last name in it.
    fn parent<'a>(&self, rel: &'a Path, op: &'static str) -> Result<(OwnedFd, &'a OsStr)> {
        let name = rel.file_name().ok_or_else(|| {
            Error::io(
                op,
                self.full(rel),
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            )
        })?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self
            .open_at(parent, dir_flags(), Mode::empty())
            .map_err(|e| walk_error(op, &self.full(parent), e))?;
        Ok((fd, name))
    }

    /// Opens the folder `rel` (the target itself for "") to read or set its metadata.
    pub fn dir(&self, rel: &Path) -> Result<File> {
        self.open_at(rel, dir_flags(), Mode::empty())
            .map(File::from)
            .map_err(|e| walk_error("open directory", &self.full(rel), e))
    }

    /// Makes the folder `rel`, or accepts a real folder already there (never a symlink
    /// to one). With `overwrite`, a non-folder in the way is removed first. New folders
    /// start at 0700; their mode is set when the restore ends.
    pub fn make_dir(&self, rel: &Path, overwrite: bool) -> Result<()> {
        let (parent, name) = self.parent(rel, "create directory")?;
        let mode = Mode::from_bits_truncate(0o700);
        match nix::sys::stat::mkdirat(&parent, name, mode) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => {
                let st = nix::sys::stat::fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| Error::io("inspect", self.full(rel), e.into()))?;
                if is_dir(&st) {
                    Ok(())
                } else if overwrite {
                    nix::unistd::unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| Error::io("remove to replace", self.full(rel), e.into()))?;
                    nix::sys::stat::mkdirat(&parent, name, mode)
                        .map_err(|e| Error::io("create directory", self.full(rel), e.into()))
                } else {
                    Err(Error::NotADirectory(self.full(rel)))
                }
            }
            Err(e) => Err(Error::io("create directory", self.full(rel), e.into())),
        }
    }

    /// Creates the file `rel` (mode 0600 until its metadata is set) and opens it for
    /// writing. With `overwrite`, a non-folder in the way is removed first.
    pub fn create_file(&self, rel: &Path, overwrite: bool) -> Result<File> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
        let mode = Mode::from_bits_truncate(0o600);
        match self.open_at(rel, flags, mode) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(Errno::EEXIST) if overwrite => {}
            Err(e) => return Err(walk_error("create file", &self.full(rel), e)),
        }
        let (parent, name) = self.parent(rel, "create file")?;
        self.remove_in_the_way(parent.as_fd(), name, rel, overwrite)?;
        nix::fcntl::openat(
            &parent,
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            mode,
        )
        .map(File::from)
        .map_err(|e| walk_error("create file", &self.full(rel), e))
    }

    /// Removes a non-folder at `name` when overwriting. Without overwrite the target
    /// started empty, so anything in the way makes the create that follows fail, as it
    /// should.
    fn remove_in_the_way(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
        overwrite: bool,
    ) -> Result<()> {
        match nix::sys::stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => Err(Error::io(
                "replace directory with a file",
                self.full(rel),
                std::io::Error::from(std::io::ErrorKind::IsADirectory),
            )),
            Ok(_) if overwrite => nix::unistd::unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| Error::io("remove to replace", self.full(rel), e.into())),
            _ => Ok(()),
        }
    }

    /// Links `rel` to the already restored file `first`.
    pub fn hard_link(&self, rel: &Path, first: &Path, overwrite: bool) -> Result<()> {
        let (parent, name) = self.parent(rel, "create hardlink")?;
        let (first_parent, first_name) = self.parent(first, "create hardlink")?;
        self.remove_in_the_way(parent.as_fd(), name, rel, overwrite)?;
        // Flags 0: a symlink at `first` would be linked itself, never followed.
        nix::unistd::linkat(&first_parent, first_name, &parent, name, AtFlags::empty())
            .map_err(|e| Error::io("create hardlink", self.full(rel), e.into()))
    }

    /// Creates the symlink `rel` -> `to` and sets its owner (when `owner` is given)
    /// and times.
    pub fn symlink(
        &self,
        rel: &Path,
        to: &[u8],
        owner: Option<(u32, u32)>,
        mtime: nix::sys::time::TimeSpec,
        overwrite: bool,
    ) -> Result<()> {
        let (parent, name) = self.parent(rel, "create symlink")?;
        self.remove_in_the_way(parent.as_fd(), name, rel, overwrite)?;
        nix::unistd::symlinkat(OsStr::from_bytes(to), &parent, name)
            .map_err(|e| Error::io("create symlink", self.full(rel), e.into()))?;
        if let Some((uid, gid)) = owner {
            // Through an O_PATH handle checked to be the symlink just made: a file
            // swapped in under the same name keeps its owner.
            let fd = nix::fcntl::openat(
                &parent,
                name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| walk_error("set owner of", &self.full(rel), e))?;
            let st = nix::sys::stat::fstat(&fd)
                .map_err(|e| Error::io("inspect", self.full(rel), e.into()))?;
            if !kind_is(&st, SFlag::S_IFLNK) {
                return Err(changed(&self.full(rel)));
            }
            nix::unistd::fchownat(
                &fd,
                "",
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
                AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Error::io("set owner of", self.full(rel), e.into()))?;
        }
        // Times by name without following: at worst the mtime of something swapped in
        // under this name inside the target.
        nix::sys::stat::utimensat(
            &parent,
            name,
            &mtime,
            &mtime,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| Error::io("set mtime of", self.full(rel), e.into()))
    }

    /// Creates the FIFO `rel` and opens it (without blocking) to set its metadata.
    pub fn fifo(&self, rel: &Path, overwrite: bool) -> Result<File> {
        let (parent, name) = self.parent(rel, "create fifo")?;
        self.remove_in_the_way(parent.as_fd(), name, rel, overwrite)?;
        nix::unistd::mkfifoat(&parent, name, Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::io("create fifo", self.full(rel), e.into()))?;
        let fd = nix::fcntl::openat(
            &parent,
            name,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| walk_error("open fifo", &self.full(rel), e))?;
        let st = nix::sys::stat::fstat(&fd)
            .map_err(|e| Error::io("inspect", self.full(rel), e.into()))?;
        if !kind_is(&st, SFlag::S_IFIFO) {
            return Err(changed(&self.full(rel)));
        }
        Ok(File::from(fd))
    }

    /// Renames the file `rel` to `rel` + `suffix` in the same folder; returns the new
    /// relative path. Without `overwrite`, an entry already at the new name is kept
    /// and the rename fails.
    pub fn rename_with_suffix(&self, rel: &Path, suffix: &str, overwrite: bool) -> Result<PathBuf> {
        let (parent, name) = self.parent(rel, "rename")?;
        let mut new_name = OsString::from(name);
        new_name.push(suffix);
        let new_rel = rel.with_file_name(&new_name);
        if !overwrite
            && nix::sys::stat::fstatat(&parent, new_name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok()
        {
            return Err(Error::io(
                "rename a damaged file to",
                self.full(&new_rel),
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        nix::fcntl::renameat(&parent, name, &parent, new_name.as_os_str())
            .map_err(|e| Error::io("rename a damaged file to", self.full(&new_rel), e.into()))?;
        Ok(new_rel)
    }

    /// Removes the file `rel` (not a folder).
    pub fn remove_file(&self, rel: &Path) -> Result<()> {
        let (parent, name) = self.parent(rel, "remove")?;
        nix::unistd::unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| Error::io("remove", self.full(rel), e.into()))
    }

    /// Makes everything written to the target's filesystem durable.
    pub fn sync(&self) -> Result<()> {
        nix::unistd::syncfs(&self.root)
            .map_err(|e| Error::io("sync the filesystem of", &self.path, e.into()))
    }
}

/// A failed step on the way to an entry. A symlink or a non-folder where a folder
/// should be (ELOOP, ENOTDIR, or EXDEV from RESOLVE_BENEATH) is a refusal; anything
/// else an I/O error.
fn walk_error(op: &'static str, path: &Path, e: Errno) -> Error {
    match e {
        Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV => Error::NotADirectory(path.to_path_buf()),
        other => Error::io(op, path, other.into()),
    }
}

/// An entry that was replaced by something else while the restore ran.
fn changed(path: &Path) -> Error {
    Error::io(
        "restore",
        path,
        std::io::Error::other("it was replaced by something else while the restore ran"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_reached_through_a_symlink_at_any_component() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(target.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(&outside, target.join("a/link")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), target.join("a/file-link")).unwrap();
        let t = TargetDir::open(&target, None).unwrap();
        for (i, fallback) in [false, true].into_iter().enumerate() {
            if fallback {
                t.openat2.store(false, Ordering::Relaxed);
            }
            let err = t.create_file(Path::new("a/link/new"), true).unwrap_err();
            assert!(matches!(err, Error::NotADirectory(_)), "{i}: {err}");
            assert!(matches!(
                t.dir(Path::new("a/link")),
                Err(Error::NotADirectory(_))
            ));
            assert!(t.make_dir(Path::new("a/link/sub"), true).is_err());
            assert!(t.fifo(Path::new("a/link/p"), true).is_err());
            // Without overwrite a symlink in the way is an error; it is never opened.
            assert!(t.create_file(Path::new("a/file-link"), false).is_err());
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "keep"
        );
        // With overwrite the symlink itself is replaced by a file.
        let mut f = t.create_file(Path::new("a/file-link"), true).unwrap();
        std::io::Write::write_all(&mut f, b"new").unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(target.join("a/file-link")).unwrap(),
            "new"
        );
    }

    #[test]
    fn a_confined_target_is_walked_from_its_folder_without_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let anchor = dir.path().join("restores");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&anchor).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, anchor.join("evil")).unwrap();
        let err = TargetDir::open(&anchor.join("evil/x"), Some(&anchor))
            .err()
            .unwrap();
        assert!(matches!(err, Error::NotADirectory(_)), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        let t = TargetDir::open(&anchor.join("good/x"), Some(&anchor)).unwrap();
        t.make_dir(Path::new("d"), false).unwrap();
        assert!(anchor.join("good/x/d").is_dir());
    }
}
