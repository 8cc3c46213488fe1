//! The catalog's copy of each tier's index files, so that opening a repository (which
//! loads every index file into the engine's in-memory index, the table behind dedup
//! lookups) costs one listing of `index/` instead of one read per index file. On an S3
//! tier that is one LIST instead of a GET per backup ever made.
//!
//! Index files are written once under a random name and never changed, so a cached
//! copy is valid for as long as the name is listed; each listing drops the rows of
//! names the tier no longer has (a prune, a lost disk), and a name the cache lacks is
//! read from the tier and added. A missing catalog rebuilds itself this way. The rows
//! hold the files as stored, still encrypted.
//!
//! `drctl verify` reads tiers without this cache: it exists to find what the tier
//! itself holds.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use drd_core::catalog::Catalog;
use drd_repo::Storage;
use rusqlite::{params, OptionalExtension};

/// A tier's storage whose index files are served from the catalog.
pub struct CachedIndex {
    inner: Arc<dyn Storage>,
    catalog: Catalog,
    location: String,
}

impl CachedIndex {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>, catalog: Catalog) -> CachedIndex {
        let location = inner.location().display().to_string();
        CachedIndex {
            inner,
            catalog,
            location,
        }
    }

    fn cached(&self, name: &str) -> Option<Vec<u8>> {
        let (location, name) = (self.location.clone(), name.to_owned());
        self.catalog
            .call_blocking("read cached index file", move |c| {
                c.query_row(
                    "SELECT body FROM index_files WHERE location = ?1 AND name = ?2",
                    params![location, name],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(|err| tracing::warn!(cause = %err, "index cache unreadable; reading the tier"))
            .ok()
            .flatten()
    }

    fn remember(&self, name: &str, body: &[u8]) {
        let (location, name, body) = (self.location.clone(), name.to_owned(), body.to_vec());
        if let Err(err) = self.catalog.call_blocking("cache index file", move |c| {
            c.execute(
                "INSERT OR REPLACE INTO index_files (location, name, body) VALUES (?1, ?2, ?3)",
                params![location, name, body],
            )
        }) {
            tracing::warn!(cause = %err, "cannot cache an index file");
        }
    }

    /// Drops the rows of index files the tier no longer lists.
    fn forget_all_but(&self, listed: &[String]) {
        let location = self.location.clone();
        let keep: BTreeSet<String> = listed.iter().cloned().collect();
        let result = self.catalog.call_blocking("trim index cache", move |c| {
            let tx = c.transaction()?;
            let names: Vec<String> = {
                let mut stmt = tx.prepare("SELECT name FROM index_files WHERE location = ?1")?;
                let rows = stmt.query_map([&location], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for name in names.iter().filter(|n| !keep.contains(*n)) {
                tx.execute(
                    "DELETE FROM index_files WHERE location = ?1 AND name = ?2",
                    params![location, name],
                )?;
            }
            tx.commit()
        });
        if let Err(err) = result {
            tracing::warn!(cause = %err, "cannot trim the index cache");
        }
    }
}

impl Storage for CachedIndex {
    fn location(&self) -> PathBuf {
        self.inner.location()
    }

    fn describe(&self, name: &str) -> PathBuf {
        self.inner.describe(name)
    }

    fn read(&self, name: &str) -> drd_repo::Result<Vec<u8>> {
        let Some(index_name) = name.strip_prefix("index/") else {
            return self.inner.read(name);
        };
        if let Some(body) = self.cached(index_name) {
            return Ok(body);
        }
        let body = self.inner.read(name)?;
        self.remember(index_name, &body);
        Ok(body)
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> drd_repo::Result<Vec<u8>> {
        self.inner.read_at(name, offset, len)
    }

    fn read_at_into(
        &self,
        name: &str,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
        kept: &mut drd_repo::KeptOpen,
    ) -> drd_repo::Result<()> {
        self.inner.read_at_into(name, offset, len, buf, kept)
    }

    fn size(&self, name: &str) -> drd_repo::Result<Option<u64>> {
        self.inner.size(name)
    }

    fn write_atomic(&self, name: &str, data: &[u8]) -> drd_repo::Result<()> {
        self.inner.write_atomic(name, data)?;
        if let Some(index_name) = name.strip_prefix("index/") {
            self.remember(index_name, data);
        }
        Ok(())
    }

    fn stage(&self, dir: &str) -> drd_repo::Result<Box<dyn drd_repo::Staged>> {
        self.inner.stage(dir)
    }

    fn unfinished(&self, dir: &str) -> drd_repo::Result<Vec<(String, u64)>> {
        self.inner.unfinished(dir)
    }

    fn list(&self, dir: &str) -> drd_repo::Result<Vec<String>> {
        let names = self.inner.list(dir)?;
        if dir == "index" {
            self.forget_all_but(&names);
        }
        Ok(names)
    }

    fn forget_reads(&self) {
        self.inner.forget_reads();
    }

    fn remove(&self, name: &str) -> drd_repo::Result<()> {
        self.inner.remove(name)?;
        if let Some(index_name) = name.strip_prefix("index/") {
            let (location, index_name) = (self.location.clone(), index_name.to_owned());
            if let Err(err) = self.catalog.call_blocking("uncache index file", move |c| {
                c.execute(
                    "DELETE FROM index_files WHERE location = ?1 AND name = ?2",
                    params![location, index_name],
                )
            }) {
                tracing::warn!(cause = %err, "cannot drop an index file from the cache");
            }
        }
        Ok(())
    }
}
