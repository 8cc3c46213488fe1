//! Opening and creating repositories, the in-memory blob index, and reading blobs and
//! trees, from the copies too (`repo/copies.rs`). Snapshots are read and picked in
//! `snapshots.rs`.

mod copies;
mod index;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;

use crate::crypto::KeySet;
use crate::error::{Error, IoContext, Result};
use crate::format::{
    BlobKind, ChunkerParams, ConfigFile, Id, NodeKind, Secret, Snapshot, Tree, FORMAT_NAME,
    FORMAT_VERSION,
};
use crate::lock::{self, LockGuard};
use crate::pack::{self, pack_name, BlobBuf};
use crate::storage::{LocalDir, Storage};
use copies::CopyIndexes;
pub(crate) use index::{BlobLoc, Index};

/// Tunables that are not part of the format.
#[derive(Debug, Clone)]
pub struct RepoOptions {
    /// How long a lock stays valid without a heartbeat (heartbeats come every quarter).
    pub lock_lease: Duration,
    /// How long to keep retrying when another process holds a conflicting lock
    /// (zero: fail at once with [`Error::Locked`]).
    pub lock_wait: Duration,
}

impl Default for RepoOptions {
    fn default() -> Self {
        RepoOptions {
            lock_lease: Duration::from_secs(300),
            lock_wait: Duration::ZERO,
        }
    }
}

/// An open repository.
pub struct Repository {
    pub(crate) path: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) keys: KeySet,
    pub(crate) id_key: [u8; 32],
    pub(crate) config: ConfigFile,
    pub(crate) index: RwLock<Index>,
    pub(crate) options: RepoOptions,
    /// Replicas tried, in order, when a blob cannot be read or is damaged here.
    pub(crate) fallbacks: Vec<Arc<dyn Storage>>,
    /// Their indexes, loaded when the current operation first needs one.
    pub(crate) copies: CopyIndexes,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("path", &self.path)
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

/// A lock held on a repository (see [`Repository::try_lock_shared`]); dropping it
/// releases the lock.
pub struct RepoLock {
    _guard: LockGuard,
}

impl std::fmt::Debug for RepoLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoLock").finish_non_exhaustive()
    }
}

/// Choices fixed when a repository is created.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Average chunk size in bytes (a power of two, 256 B to 4 MiB); chunks are between
    /// a quarter and four times this. Smaller chunks dedup scattered changes (database
    /// pages) better; larger ones keep the in-memory index smaller (about 130 bytes of
    /// RAM per chunk).
    pub chunk_avg: u32,
    /// Target pack size in bytes.
    pub pack_size: u64,
}

impl Default for InitOptions {
    /// 512 KiB average chunks (128 KiB to 2 MiB) and 16 MiB packs.
    fn default() -> Self {
        InitOptions {
            chunk_avg: 512 * 1024,
            pack_size: 16 * 1024 * 1024,
        }
    }
}

impl Repository {
    /// Creates a new repository in `path` (which must be missing or an empty directory).
    pub fn init(path: &Path, keys: &KeySet) -> Result<Repository> {
        Repository::init_with(path, keys, &InitOptions::default())
    }

    /// [`Repository::init`] with a chosen chunk and pack size.
    pub fn init_with(path: &Path, keys: &KeySet, options: &InitOptions) -> Result<Repository> {
        if path.exists() && !path.join("config").exists() {
            let mut entries = std::fs::read_dir(path).ctx("list", path)?;
            if entries.next().is_some() {
                return Err(Error::AlreadyExists {
                    path: path.to_path_buf(),
                    reason: "the directory is not empty".into(),
                });
            }
        }
        for d in ["", "data", "index", "snapshots", "locks"] {
            let p = path.join(d);
            std::fs::create_dir_all(&p).ctx("create directory", &p)?;
        }
        Repository::init_on(Arc::new(LocalDir::new(path)), keys, options)
    }

    /// Creates a new repository on any [`Storage`].
    pub fn init_on(
        storage: Arc<dyn Storage>,
        keys: &KeySet,
        options: &InitOptions,
    ) -> Result<Repository> {
        let path = storage.location();
        if storage.size("config")?.is_some() {
            return Err(Error::AlreadyExists {
                path,
                reason: "a repository is already there".into(),
            });
        }
        let avg = options.chunk_avg;
        if !avg.is_power_of_two() || !(1024..=4 * 1024 * 1024).contains(&avg) {
            return Err(Error::InvalidOption(format!(
                "chunk size {avg} must be a power of two between 1 KiB and 4 MiB"
            )));
        }
        let chunker = ChunkerParams {
            min: (avg / 4).max(64),
            avg,
            max: avg.saturating_mul(4).min(16 * 1024 * 1024),
        };
        let pack_size = options.pack_size.max(1024);
        let mut id_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id_key);
        let secret = Secret {
            id_key: hex::encode(id_key),
        };
        let secret_json = serde_json::to_vec(&secret)
            .map_err(|e| Error::Internal(format!("encode secret: {e}")))?;
        let config = ConfigFile {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: Id::random().to_hex(),
            created: u64::try_from(lock::now_ms() / 1000).unwrap_or(0),
            chunker,
            pack_size,
            secret: crate::crypto::token_to_text(&keys.encrypt(&secret_json)),
        };
        let body = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::Internal(format!("encode config: {e}")))?;
        // The config is written last: its presence is what makes a repository.
        storage.write_atomic("config", &body)?;
        Repository::open_on(storage, keys, RepoOptions::default())
    }

    /// Opens an existing repository. Fails with [`Error::WrongKey`] before anything is
    /// written when none of `keys` opens it.
    pub fn open(path: &Path, keys: &KeySet) -> Result<Repository> {
        Repository::open_with(path, keys, RepoOptions::default())
    }

    /// [`Repository::open`] with options.
    pub fn open_with(path: &Path, keys: &KeySet, options: RepoOptions) -> Result<Repository> {
        Repository::open_on(Arc::new(LocalDir::new(path)), keys, options)
    }

    /// Opens a repository on any [`Storage`].
    pub fn open_on(
        storage: Arc<dyn Storage>,
        keys: &KeySet,
        options: RepoOptions,
    ) -> Result<Repository> {
        let path = storage.location();
        let config_path = storage.describe("config");
        let body = match storage.read("config") {
            Ok(b) => b,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotARepository { path })
            }
            Err(e) => return Err(e),
        };
        let config: ConfigFile = serde_json::from_slice(&body)
            .map_err(|e| Error::corrupt("config", &config_path, e.to_string()))?;
        if config.format != FORMAT_NAME || config.version != FORMAT_VERSION {
            return Err(Error::corrupt(
                "config",
                &config_path,
                format!(
                    "format {} version {} is not one this drd reads ({FORMAT_NAME} {FORMAT_VERSION})",
                    config.format, config.version
                ),
            ));
        }
        let token = base64::engine::general_purpose::URL_SAFE
            .decode(config.secret.trim())
            .map_err(|e| Error::corrupt("config", &config_path, format!("secret: {e}")))?;
        let secret_json = keys
            .decrypt(&token)
            .ok_or_else(|| Error::WrongKey { path: path.clone() })?;
        let secret: Secret = serde_json::from_slice(&secret_json)
            .map_err(|e| Error::corrupt("config", &config_path, format!("secret: {e}")))?;
        let mut id_key = [0u8; 32];
        hex::decode_to_slice(&secret.id_key, &mut id_key)
            .map_err(|e| Error::corrupt("config", &config_path, format!("id key: {e}")))?;
        let repo = Repository {
            path,
            storage,
            keys: keys.clone(),
            id_key,
            config,
            index: RwLock::new(Index::default()),
            options,
            fallbacks: Vec::new(),
            copies: CopyIndexes::default(),
        };
        repo.refresh()?;
        Ok(repo)
    }

    /// The storage the repository lives on.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repository's random id (hex).
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// Takes the repository lock for one operation. Every operation starts here, so
    /// this is also where reads kept by an earlier operation are dropped (the copies'
    /// indexes too): each one reads what is stored now.
    pub(crate) fn lock(&self, exclusive: bool, warnings: &mut Vec<String>) -> Result<LockGuard> {
        self.storage.forget_reads();
        for replica in &self.fallbacks {
            replica.forget_reads();
        }
        self.copies.forget();
        let deadline = std::time::Instant::now() + self.options.lock_wait;
        loop {
            match lock::acquire(&self.storage, exclusive, self.options.lock_lease, warnings) {
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Tries once to take a shared lock and hold it until the returned guard drops;
    /// fails with [`Error::Locked`] at once while another process holds the exclusive
    /// lock (a prune, a repair). Lets a caller wait for the lock, as it sees fit,
    /// before it starts work that must not wait (pausing containers, starting a dump):
    /// shared locks coexist, so the operation it then runs takes its own beside it.
    pub fn try_lock_shared(&self, warnings: &mut Vec<String>) -> Result<RepoLock> {
        self.storage.forget_reads();
        lock::acquire(&self.storage, false, self.options.lock_lease, warnings)
            .map(|guard| RepoLock { _guard: guard })
    }

    /// Sets how long operations keep retrying when another process holds a conflicting
    /// lock (see [`RepoOptions::lock_wait`]).
    pub fn set_lock_wait(&mut self, wait: Duration) {
        self.options.lock_wait = wait;
    }

    /// A shared lock for reading (restore, verify). A repository on read-only storage
    /// (a mounted offsite disk, a recovery medium) cannot hold lock files; reading it
    /// unlocked is then allowed, with a warning.
    pub(crate) fn lock_for_read(&self, warnings: &mut Vec<String>) -> Result<Option<LockGuard>> {
        match self.lock(false, warnings) {
            Ok(g) => Ok(Some(g)),
            Err(Error::Io { source, path, .. })
                if source.raw_os_error() == Some(libc::EROFS)
                    || source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                warnings.push(format!(
                    "could not take a lock ({}: {source}); reading the repository unlocked",
                    path.display()
                ));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn locate(&self, id: &Id) -> Option<BlobLoc> {
        self.index.read().ok()?.get(id)
    }

    /// Reads, decrypts, decompresses and checks one blob. `context` names what needs it.
    /// A blob that is missing, damaged or unreadable here is read from a copy that
    /// lists it in its own index; if none has it whole, the error met here is returned.
    pub(crate) fn read_blob(&self, id: &Id, context: &str) -> Result<Vec<u8>> {
        let mut buf = BlobBuf::default();
        self.read_blob_into(id, context, &mut buf)?;
        Ok(buf.data)
    }

    /// [`Repository::read_blob`] into buffers the caller reuses from blob to blob.
    pub(crate) fn read_blob_into<'b>(
        &self,
        id: &Id,
        context: &str,
        buf: &'b mut BlobBuf,
    ) -> Result<&'b [u8]> {
        let first = match self.locate(id) {
            Some(loc) => self.read_blob_in(&*self.storage, &loc, context, buf),
            None => Err(Error::MissingBlob {
                id: id.to_hex(),
                context: context.to_string(),
            }),
        };
        if let Err(e) = first {
            let from_copy = self
                .in_copies(id)
                .into_iter()
                .any(|(copy, loc)| self.read_blob_in(copy, &loc, context, buf).is_ok());
            if !from_copy {
                return Err(e);
            }
        }
        Ok(&buf.data)
    }

    fn read_blob_in(
        &self,
        storage: &dyn Storage,
        loc: &BlobLoc,
        context: &str,
        buf: &mut BlobBuf,
    ) -> Result<()> {
        let name = pack_name(&loc.pack);
        storage.read_at_into(
            &name,
            loc.entry.offset,
            loc.entry.length as usize,
            &mut buf.token,
            &mut buf.pack,
        )?;
        buf.open(&self.keys, &loc.entry)
            .map_err(|reason| self.unopened(loc, &name, &reason, context))?;
        self.check_id(loc, &name, &buf.data, context)
    }

    /// Adds a replica of this repository (see [`Repository::replicate_to`]) from which
    /// restore and reads fetch a blob that is missing or damaged here.
    pub fn with_fallback(mut self, replica: Arc<dyn Storage>) -> Self {
        self.fallbacks.push(replica);
        self
    }

    pub(crate) fn open_token(&self, loc: &BlobLoc, token: &[u8], context: &str) -> Result<Vec<u8>> {
        let name = pack_name(&loc.pack);
        let data = pack::open_blob(&self.keys, &loc.entry, token)
            .map_err(|reason| self.unopened(loc, &name, &reason, context))?;
        self.check_id(loc, &name, &data, context)?;
        Ok(data)
    }

    /// A blob whose token does not decrypt or decompress (the pack's path is made only
    /// for the error).
    fn unopened(&self, loc: &BlobLoc, pack: &str, reason: &str, context: &str) -> Error {
        Error::corrupt(
            "blob",
            self.storage.describe(pack),
            format!("blob {} for {context} {reason}", loc.entry.id),
        )
    }

    /// Checks that opened plaintext is the blob the index says it is.
    fn check_id(&self, loc: &BlobLoc, pack: &str, data: &[u8], context: &str) -> Result<()> {
        if pack::blob_id(&self.id_key, data) != loc.entry.id {
            return Err(Error::BlobMismatch {
                id: loc.entry.id.to_hex(),
                pack: self.storage.describe(pack),
                context: context.to_string(),
            });
        }
        Ok(())
    }

    pub(crate) fn read_tree(&self, id: &Id, context: &str) -> Result<Tree> {
        let data = self.read_blob(id, context)?;
        bincode::deserialize(&data).map_err(|e| {
            Error::corrupt(
                "tree",
                self.path.clone(),
                format!("tree {id} for {context}: {e}"),
            )
        })
    }

    /// The raw Fernet token of one stored blob and whether its plaintext is a zstd frame.
    /// Base64url-encoding the token gives a standard Fernet token (for checks with other
    /// Fernet implementations).
    pub fn blob_token(&self, id: &Id) -> Result<(Vec<u8>, bool)> {
        let loc = self.locate(id).ok_or_else(|| Error::MissingBlob {
            id: id.to_hex(),
            context: "blob_token".into(),
        })?;
        let token = self.storage.read_at(
            &pack_name(&loc.pack),
            loc.entry.offset,
            loc.entry.length as usize,
        )?;
        Ok((token, loc.entry.compressed))
    }

    /// Where a blob is stored: the pack file, and the offset and length of its raw token
    /// in it (for tooling, and for tests that damage or decrypt one blob).
    pub fn blob_location(&self, id: &Id) -> Option<(PathBuf, u64, u32)> {
        let loc = self.locate(id)?;
        Some((
            self.storage.describe(&pack_name(&loc.pack)),
            loc.entry.offset,
            loc.entry.length,
        ))
    }

    /// The data blob ids of a file in a snapshot (path inside the snapshot, '/'-separated).
    pub fn file_blobs(&self, snapshot: &Snapshot, path: &str) -> Result<Vec<Id>> {
        let mut tree = self.read_tree(&snapshot.tree, "snapshot root")?;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let node = tree
                .nodes
                .iter()
                .find(|n| n.name == part.as_bytes())
                .ok_or_else(|| Error::PathNotInSnapshot(path.to_string()))?;
            if i + 1 == parts.len() {
                if node.kind == NodeKind::File {
                    return Ok(node.content.clone());
                }
                break;
            }
            let sub = node
                .subtree
                .ok_or_else(|| Error::PathNotInSnapshot(path.to_string()))?;
            tree = self.read_tree(&sub, path)?;
        }
        Err(Error::PathNotInSnapshot(path.to_string()))
    }

    pub(crate) fn chunker(&self) -> ChunkerParams {
        self.config.chunker
    }

    pub(crate) fn pack_size(&self) -> usize {
        usize::try_from(self.config.pack_size).unwrap_or(usize::MAX)
    }

    pub(crate) fn has_blob(&self, id: &Id) -> bool {
        self.index
            .read()
            .map(|i| i.blobs.contains_key(id))
            .unwrap_or(false)
    }

    /// Kinds are recorded per blob; this looks one up (tests and verify use it).
    #[allow(dead_code)]
    pub(crate) fn blob_kind(&self, id: &Id) -> Option<BlobKind> {
        self.locate(id).map(|l| l.entry.kind)
    }
}

/// What to do about a damaged index file, for messages.
pub(crate) const REPAIR_HINT: &str = "run `drd repair index` (or `drctl repair index`) to \
     write a new index from the pack headers and remove the damaged file";

pub(crate) fn poisoned() -> Error {
    Error::Internal("a repository lock was poisoned by a panicking thread".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Repository>();
        assert_send_sync::<KeySet>();
    }
}
