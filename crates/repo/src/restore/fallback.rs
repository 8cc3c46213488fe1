//! The restore's view of the repository: blobs and trees as [`Repository::read_blob`]
//! reads them (from a copy, by the copy's own index, when one is missing or damaged
//! here), and where a blob is, in this repository's index or a copy's, so that a file
//! whose blob only a copy lists is still ordered and sized.

use crate::error::Result;
use crate::format::{Id, Tree};
use crate::pack::BlobBuf;
use crate::repo::{BlobLoc, Repository};

/// A restore's reader.
pub(super) struct Reader<'a> {
    repo: &'a Repository,
}

impl<'a> Reader<'a> {
    pub fn new(repo: &'a Repository) -> Reader<'a> {
        Reader { repo }
    }

    /// Reads, decrypts and checks one blob, from the landing tier or any copy, into
    /// buffers the caller reuses from blob to blob.
    pub fn blob<'b>(&self, id: &Id, context: &str, buf: &'b mut BlobBuf) -> Result<&'b [u8]> {
        self.repo.read_blob_into(id, context, buf)
    }

    /// Reads a tree blob.
    pub fn tree(&self, id: &Id, context: &str) -> Result<Tree> {
        self.repo.read_tree(id, context)
    }

    /// Where a blob is, in the landing index or a copy's.
    pub fn locate(&self, id: &Id) -> Option<BlobLoc> {
        self.repo.locate_anywhere(id)
    }
}
