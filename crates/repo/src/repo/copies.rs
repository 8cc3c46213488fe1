//! Finding a blob in the copies of a repository (its fallbacks, see
//! [`Repository::with_fallback`]) by each copy's own index. A copy's packs are the
//! landing tier's only until a prune on either side repacks one: the rewritten pack is
//! named by a hash of its new bytes, and the blob sits at another offset in it. So a
//! blob is looked up in the copy's index, never at the landing tier's pack name.
//!
//! A copy's index is loaded the first time an operation needs it and kept for that
//! operation only: [`Repository::lock`] drops it, as it drops the storages' kept reads,
//! so the next operation sees a pack or index file that a prune or a sync has replaced.

use std::sync::{Arc, Mutex};

use super::{BlobLoc, Index, Repository};
use crate::format::{Id, IndexFile};
use crate::storage::Storage;

/// The copies' indexes, in the order of the repository's fallbacks, once loaded.
#[derive(Default)]
pub(crate) struct CopyIndexes(Mutex<Option<Arc<Vec<Index>>>>);

impl CopyIndexes {
    /// Drops what was loaded; the next lookup reads the copies' index files again.
    pub(crate) fn forget(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Repository {
    /// Where the copies hold a blob: each copy that lists it, with its place there.
    pub(crate) fn in_copies(&self, id: &Id) -> Vec<(&dyn Storage, BlobLoc)> {
        if self.fallbacks.is_empty() {
            return Vec::new();
        }
        let indexes = {
            // Held while loading, so that the restore's reader threads load each copy's
            // index once between them.
            let mut slot = self.copies.0.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert_with(|| {
                Arc::new(
                    self.fallbacks
                        .iter()
                        .map(|s| self.copy_index(&**s))
                        .collect(),
                )
            })
            .clone()
        };
        self.fallbacks
            .iter()
            .zip(indexes.iter())
            .filter_map(|(s, index)| index.blobs.get(id).map(|loc| (&**s, loc)))
            .collect()
    }

    /// Where a blob is: in this repository's index, else in a copy's.
    pub(crate) fn locate_anywhere(&self, id: &Id) -> Option<BlobLoc> {
        self.locate(id)
            .or_else(|| self.in_copies(id).into_iter().next().map(|(_, loc)| loc))
    }

    /// A copy's index; what cannot be read is left out (the copy is a last resort).
    fn copy_index(&self, storage: &dyn Storage) -> Index {
        let mut index = Index::default();
        for name in storage.list("index").unwrap_or_default() {
            let Ok(token) = storage.read(&format!("index/{name}")) else {
                continue;
            };
            let Some(plain) = self.keys.decrypt(&token) else {
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
}
