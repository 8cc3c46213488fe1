//! Reading blobs for a restore. [`Repository::read_blob`] already reads a blob that is
//! damaged on the landing tier from its copies, at the place the landing index names;
//! this also finds, in the copies' own indexes (loaded the first time one is needed),
//! a blob the landing tier's index lacks (a lost or damaged index file) and a damaged
//! or missing blob whose pack a prune on either tier has rewritten: a repack writes the
//! blob into a new pack whose name (a hash of its bytes) the other tier does not have.

use std::sync::OnceLock;

use super::is_damage;
use crate::error::{Error, Result};
use crate::format::{Id, IndexFile, Tree};
use crate::pack::pack_name;
use crate::repo::{BlobLoc, Index, Repository};
use crate::storage::Storage;

/// A restore's reader: the repository, then its copies' indexes.
pub(super) struct Reader<'a> {
    pub repo: &'a Repository,
    copies: OnceLock<Vec<Index>>,
}

impl<'a> Reader<'a> {
    pub fn new(repo: &'a Repository) -> Reader<'a> {
        Reader {
            repo,
            copies: OnceLock::new(),
        }
    }

    /// Reads, decrypts and checks one blob, from the landing tier or any copy.
    pub fn blob(&self, id: &Id, context: &str) -> Result<Vec<u8>> {
        let first = self.repo.read_blob(id, context);
        match &first {
            Err(e) if is_damage(e) => {}
            _ => return first,
        }
        for (storage, loc) in self.in_copies(id) {
            let read = storage
                .read_at(
                    &pack_name(&loc.pack),
                    loc.entry.offset,
                    loc.entry.length as usize,
                )
                .and_then(|token| self.repo.open_token(&loc, &token, context));
            if read.is_ok() {
                return read;
            }
        }
        first
    }

    /// Reads a tree blob.
    pub fn tree(&self, id: &Id, context: &str) -> Result<Tree> {
        let data = self.blob(id, context)?;
        bincode::deserialize(&data).map_err(|e| {
            Error::corrupt(
                "tree",
                self.repo.path.clone(),
                format!("tree {id} for {context}: {e}"),
            )
        })
    }

    /// Where a blob is, in the landing index or a copy's.
    pub fn locate(&self, id: &Id) -> Option<BlobLoc> {
        self.repo
            .locate(id)
            .or_else(|| self.in_copies(id).into_iter().next().map(|(_, loc)| loc))
    }

    fn in_copies(&self, id: &Id) -> Vec<(&dyn Storage, BlobLoc)> {
        let copies = self.copies.get_or_init(|| {
            self.repo
                .fallbacks
                .iter()
                .map(|s| load_index(self.repo, &**s))
                .collect()
        });
        self.repo
            .fallbacks
            .iter()
            .zip(copies)
            .filter_map(|(s, index)| index.blobs.get(id).map(|loc| (&**s, *loc)))
            .collect()
    }
}

/// A copy's index; what cannot be read is left out (the copy is a last resort).
fn load_index(repo: &Repository, storage: &dyn Storage) -> Index {
    let mut index = Index::default();
    for name in storage.list("index").unwrap_or_default() {
        let Ok(token) = storage.read(&format!("index/{name}")) else {
            continue;
        };
        let Some(plain) = repo.keys.decrypt(&token) else {
            continue;
        };
        if let Ok(file) = bincode::deserialize::<IndexFile>(&plain) {
            for pack in &file.packs {
                index.add(pack);
            }
        }
    }
    index
}
