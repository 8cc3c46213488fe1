//! File readers: threads that open, read, chunk and hash the files the walk hands them,
//! several at once. On many small files a backup's cost is system calls and path
//! lookups per file, not bytes, and one thread doing them all was the bottleneck; on a
//! large file one reader works while the others take the files after it.
//!
//! The walk stays the one owner of the trees: it sends a [`Task`] per file (or stream
//! source) to read and puts its [`Outcome`] in its place when it comes back.

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crossbeam_channel::{Receiver, Sender};

use super::chunk::{ChunkError, Chunks, Shared};
use super::walk::{file_xattrs, fingerprint, node_from_meta};
use super::Job;
use crate::error::{Error, Result};
use crate::format::{Node, NodeKind};
use crate::pack::Blobs;

/// A file or stream to read.
pub(super) struct Task {
    /// Walk order, to find the outcome's place.
    pub ticket: u64,
    /// The node as the walk made it (no content, no xattrs yet).
    pub node: Node,
    pub what: What,
}

/// Where a task's content comes from.
pub(super) enum What {
    /// A file, as the walk's lstat saw it.
    File {
        path: PathBuf,
        /// The directory the walk listed it in, open: the file is opened by its name
        /// in there rather than by walking down its whole path again (on 500,000
        /// small files those path walks were 2 % of the backup's CPU).
        dir: Option<Arc<OwnedFd>>,
        /// Size, mtime and ctime from that lstat.
        before: (u64, i64, i64),
    },
    /// A stream source: any read error fails the backup.
    Stream {
        name: String,
        reader: Box<dyn Read + Send>,
    },
}

/// A file read, or why not.
pub(super) struct Outcome {
    pub ticket: u64,
    /// The node with its content; `None` when the file was skipped (and said why in
    /// `warnings`); an error stops the backup.
    pub node: Result<Option<Node>>,
    pub warnings: Vec<String>,
}

/// Reads tasks until the walk closes the channel or the backup stops. Fails only when
/// new blobs it chunked could not be handed on.
pub(super) fn run(
    shared: &Shared<'_>,
    jobs: Sender<Blobs<Job>>,
    tasks: Receiver<Task>,
    outcomes: Sender<Outcome>,
) -> Result<()> {
    let mut chunks = Chunks::new(shared, jobs);
    for task in tasks {
        let mut warnings = Vec::new();
        // Cancelled, or failed elsewhere: the files still queued are not read, and the
        // walk learns why from the first of them.
        let node = match (shared.check_stop(), task.what) {
            (Err(e), _) => Err(e),
            (Ok(()), What::File { path, dir, before }) => {
                let at = Place {
                    path: &path,
                    dir: dir.as_ref(),
                };
                read_file(&mut chunks, at, task.node, before, &mut warnings)
            }
            (Ok(()), What::Stream { name, reader }) => {
                read_stream(&mut chunks, &name, reader, task.node)
            }
        };
        let stopped = node.is_err();
        let sent = outcomes.send(Outcome {
            ticket: task.ticket,
            node,
            warnings,
        });
        if stopped || sent.is_err() {
            break;
        }
    }
    // The walk sees the readers gone, should it still wait for one.
    drop(outcomes);
    chunks.flush()
}

fn read_stream(
    chunks: &mut Chunks<'_>,
    name: &str,
    mut reader: Box<dyn Read + Send>,
    mut node: Node,
) -> Result<Option<Node>> {
    match chunks.stream(&mut reader, None) {
        Ok((content, size)) => {
            node.content = content;
            node.size = size;
            Ok(Some(node))
        }
        Err(ChunkError::Io(e)) => Err(Error::SourceFailed {
            source_name: format!("stream {name}"),
            cause: e.to_string(),
        }),
        Err(ChunkError::Stopped(e)) => Err(e),
    }
}

/// Where the walk found an entry: its path (for messages, and to open it by when its
/// directory is not open) and the open directory that holds it under its name.
#[derive(Clone, Copy)]
pub(super) struct Place<'a> {
    pub path: &'a Path,
    pub dir: Option<&'a Arc<OwnedFd>>,
}

impl Place<'_> {
    /// Opens the file for reading, never following a symlink at its name.
    fn open(self, name: &[u8]) -> std::io::Result<File> {
        match self.dir {
            Some(dir) => nix::fcntl::openat(
                &**dir,
                OsStr::from_bytes(name),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map(File::from)
            .map_err(std::io::Error::from),
            None => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(self.path),
        }
    }
}

/// Reads one file; reads it again once if it changed while it was read.
fn read_file(
    chunks: &mut Chunks<'_>,
    at: Place<'_>,
    mut node: Node,
    mut before: (u64, i64, i64),
    warnings: &mut Vec<String>,
) -> Result<Option<Node>> {
    let path = at.path;
    for attempt in 0..2 {
        let mut file = match at.open(&node.name) {
            Ok(f) => f,
            Err(e) => {
                warnings.push(format!("skipped {}: {e}", path.display()));
                return Ok(None);
            }
        };
        // Through the open file: one walk down the path fewer per file.
        node.xattrs = file_xattrs(&file);
        let (content, size) = match chunks.stream(&mut file, Some(before.0)) {
            Ok(c) => c,
            Err(ChunkError::Io(e)) => {
                warnings.push(format!("skipped {}: read failed: {e}", path.display()));
                return Ok(None);
            }
            Err(ChunkError::Stopped(e)) => return Err(e),
        };
        match current_meta(&file) {
            Some(m) if fingerprint(&m) == before => {
                node.content = content;
                return Ok(Some(node));
            }
            Some(m) => {
                // Record what we actually stored.
                node = Node {
                    content,
                    size,
                    ..node_from_meta(&node.name, NodeKind::File, &m)
                };
                node.xattrs = file_xattrs(&file);
                before = fingerprint(&m);
                if attempt == 1 {
                    warnings.push(format!(
                        "{} changed while it was read (twice); stored as read, it may be \
                         inconsistent",
                        path.display()
                    ));
                }
            }
            None => {
                warnings.push(format!(
                    "{} vanished while it was read; skipped",
                    path.display()
                ));
                return Ok(None);
            }
        }
    }
    Ok(Some(node))
}

/// Metadata after reading, through the open file; `None` when its last name was
/// removed (or renamed over) while it was read. No lookup of the path: on many small
/// files that was a walk down the path per file. A file renamed within the tree while
/// it was read has a new ctime, so it is read again and stored under the name the walk
/// saw.
fn current_meta(file: &File) -> Option<Metadata> {
    let m = file.metadata().ok()?;
    (m.nlink() > 0).then_some(m)
}
