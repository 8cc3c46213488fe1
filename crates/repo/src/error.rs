//! The one error type of the crate. Every variant says what was being done and on which
//! path, so that the message alone tells an on-call engineer where to look.

use std::path::PathBuf;

/// Errors from the repository engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a file or directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open pack", "read source file", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// None of the configured keys decrypts the repository's config.
    #[error(
        "this key does not open repository {path} (check that the key file is the one the \
         repository was created with, or that a key used before a rotation is still listed)"
    )]
    WrongKey {
        /// The repository directory.
        path: PathBuf,
    },
    /// A key file is malformed (wrong length or not urlsafe base64).
    #[error(
        "key file {path} is not a Fernet key (expected 32 bytes in urlsafe base64, as written \
         by `drd key generate` or Python's Fernet.generate_key())"
    )]
    BadKey {
        /// The key file.
        path: PathBuf,
    },
    /// No key file was given.
    #[error("no key file given: at least one Fernet key file is needed")]
    NoKeys,
    /// The path is not a repository (no config file).
    #[error("{path} is not a drd repository (no config file): check the path, or run init")]
    NotARepository {
        /// The directory.
        path: PathBuf,
    },
    /// `init` was asked to create a repository where one (or other data) exists.
    #[error("cannot create a repository in {path}: {reason}")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Refusing to overwrite an existing key file.
    #[error("key file {path} already exists: refusing to overwrite it")]
    KeyFileExists {
        /// The key file.
        path: PathBuf,
    },
    /// A repository file could not be decrypted or decoded: it is damaged or foreign.
    #[error("{what} {path} is damaged: {reason}")]
    Corrupt {
        /// Kind of file ("pack header", "index", "snapshot", "blob").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A blob the snapshot needs is not in any index.
    #[error("blob {id} is missing from the repository index (needed for {context})")]
    MissingBlob {
        /// The blob id (hex).
        id: String,
        /// What needed it.
        context: String,
    },
    /// A blob decrypted but its content does not hash to its id.
    #[error("blob {id} in pack {pack} does not match its id (needed for {context})")]
    BlobMismatch {
        /// The blob id (hex).
        id: String,
        /// The pack file.
        pack: PathBuf,
        /// The file or tree that needed it.
        context: String,
    },
    /// The repository is locked by another live process.
    #[error(
        "repository {path} is locked by {holder}: wait for it to finish, or remove {lock_file} \
         if you are sure that process is gone"
    )]
    Locked {
        /// The repository.
        path: PathBuf,
        /// Host and pid of the holder.
        holder: String,
        /// The lock file to remove by hand.
        lock_file: PathBuf,
    },
    /// No snapshot matches the selector.
    #[error("no snapshot matches {0}")]
    NoSnapshot(String),
    /// A snapshot id prefix matches more than one snapshot.
    #[error("snapshot prefix {0} is ambiguous: give more characters")]
    AmbiguousSnapshot(String),
    /// A stored tree holds a name that would escape the restore target.
    #[error("refusing to restore unsafe entry name {name:?} in {dir}: a stored name may not be empty, '.', '..', or hold '/' or NUL")]
    UnsafeName {
        /// The name as stored (lossy UTF-8).
        name: String,
        /// The directory (path inside the snapshot) that holds it.
        dir: String,
    },
    /// A restore target is not empty and overwrite was not asked for.
    #[error(
        "restore target {0} is not empty: choose an empty directory or pass --overwrite to \
         replace what is in the way"
    )]
    TargetNotEmpty(PathBuf),
    /// A restore would create a path through a symlink or over a non-directory.
    #[error("refusing to restore through {0}: it exists and is not a plain directory")]
    NotADirectory(PathBuf),
    /// A restore filter path is not in the snapshot.
    #[error("path {0} is not in the snapshot")]
    PathNotInSnapshot(String),
    /// A backup source failed.
    #[error("backup source {source_name} failed: {cause}: no snapshot written")]
    SourceFailed {
        /// The source (path or stream name).
        source_name: String,
        /// What went wrong.
        cause: String,
    },
    /// The backup plan is not usable.
    #[error("invalid backup plan: {0}")]
    InvalidPlan(String),
    /// A repository or operation option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The operation was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
    /// A worker thread panicked (a bug).
    #[error("internal error: {0}")]
    Internal(String),
    /// An index file does not decrypt or decode. Reads go on without it (the packs'
    /// own headers stand in); what needs the whole index, such as prune, stops.
    #[error(
        "index file {path} is damaged ({reason}): run `drd repair index` (or `drctl repair \
         index`) to write a new index from the pack headers and remove the damaged file"
    )]
    DamagedIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key file others than its owner may read or change (as ssh refuses a private
    /// key that is not 0600).
    #[error(
        "key file {path} has mode {mode:04o}, so users other than its owner can read or \
         change it; run `chmod 600 {path}` (and keep the key owned by the user drd runs as)"
    )]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for an [`Error::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Corrupt`].
    pub(crate) fn corrupt(
        what: &'static str,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            what,
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Adds path context to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    /// Turns an io error into [`Error::Io`] naming `op` and `path`.
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
