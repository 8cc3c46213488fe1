//! Tiers at run time: opening the repository a tier holds (a directory or an S3
//! prefix), with reads that fall back to a job's offsite copies, and keeping those
//! copies in step (`replication`).
//!
//! Everything here is blocking; handlers and workers run it on the blocking pool.

pub mod index_cache;
pub mod replication;

use std::sync::{Arc, OnceLock};

use drd_repo::{KeySet, Repository, Storage};

use crate::backup::BackupError;
use crate::config::{LoadedConfig, TierConfig};

/// The catalog that caches index files, once the daemon has one. A process runs at
/// most one daemon, and the offline commands run none (they read tiers directly), so
/// one process-wide setting serves every code path that opens a tier without passing
/// the catalog through each of them.
static INDEX_CACHE: OnceLock<crate::catalog::Catalog> = OnceLock::new();

/// Serves index files from `catalog` from now on (see [`index_cache`]).
pub fn use_index_cache(catalog: crate::catalog::Catalog) {
    let _ = INDEX_CACHE.set(catalog);
}

/// The storage behind `tier`, with index files served from the catalog when the
/// daemon runs.
pub fn storage(tier: &TierConfig) -> Result<Arc<dyn Storage>, BackupError> {
    let raw = raw_storage(tier)?;
    Ok(match INDEX_CACHE.get() {
        Some(catalog) => Arc::new(index_cache::CachedIndex::new(raw, catalog.clone())),
        None => raw,
    })
}

/// The storage behind `tier`, read directly (what `verify` wants).
pub fn raw_storage(tier: &TierConfig) -> Result<Arc<dyn Storage>, BackupError> {
    match tier {
        TierConfig::Dir { path } => Ok(Arc::new(drd_repo::LocalDir::new(path))),
        TierConfig::S3 {
            endpoint,
            bucket,
            prefix,
            region,
            access_key_id,
            secret_access_key,
        } => {
            let mut options = drd_repo::S3Options::new(bucket, prefix);
            options.endpoint.clone_from(endpoint);
            options.region.clone_from(region);
            options.access_key_id.clone_from(access_key_id);
            options.secret_access_key.clone_from(secret_access_key);
            // A plain-HTTP endpoint written in the config is an explicit choice.
            let endpoint = endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            options.allow_http = endpoint.is_some_and(|e| e.starts_with("http://"));
            Ok(Arc::new(drd_repo::S3Storage::new(&options)?))
        }
    }
}

/// Opens the repository on `tier`, reading it directly rather than through the
/// catalog's index cache: for `verify`, which must see what the tier holds.
pub fn open_uncached(tier: &TierConfig, keys: &KeySet) -> Result<Repository, BackupError> {
    Ok(Repository::open_on(
        raw_storage(tier)?,
        keys,
        drd_repo::RepoOptions::default(),
    )?)
}

/// Opens the repository on `tier`.
pub fn open(tier: &TierConfig, keys: &KeySet) -> Result<Repository, BackupError> {
    let repo = Repository::open_on(storage(tier)?, keys, drd_repo::RepoOptions::default())?;
    log_index_warnings(&repo, tier);
    Ok(repo)
}

/// Logs what of the repository's index could not be read: the work goes on without it
/// (the pack headers stand in), and `drctl repair index` mends it.
fn log_index_warnings(repo: &Repository, tier: &TierConfig) {
    for warning in repo.index_warnings() {
        tracing::warn!(tier = %tier.location(), "{warning}");
    }
}

/// Opens the repository on `tier`, creating it on first use (an empty directory or
/// prefix).
pub fn open_or_init(tier: &TierConfig, keys: &KeySet) -> Result<Repository, BackupError> {
    let storage = storage(tier)?;
    if storage.size("config")?.is_some() {
        let repo = Repository::open_on(storage, keys, drd_repo::RepoOptions::default())?;
        log_index_warnings(&repo, tier);
        return Ok(repo);
    }
    tracing::info!(tier = %tier.location(), "creating repository");
    match tier {
        TierConfig::Dir { path } => {
            // A directory that holds something else is not ours to fill.
            if std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some()) {
                return Err(drd_repo::Error::NotARepository { path: path.clone() }.into());
            }
            // `init` lays out the directory tree the local storage expects.
            Ok(Repository::init(path, keys)?)
        }
        TierConfig::S3 { .. } => Ok(Repository::init_on(
            storage,
            keys,
            &drd_repo::InitOptions::default(),
        )?),
    }
}

/// Opens the repository of tier `name` for reading. A landing tier gets the offsite
/// tiers that copy it as fallbacks, so a blob missing or damaged there is read from a
/// copy; an offsite tier is read on its own.
pub fn open_for_read(
    config: &LoadedConfig,
    name: &str,
    keys: &KeySet,
) -> Result<Repository, BackupError> {
    let tier = config
        .config
        .tiers
        .get(name)
        .ok_or_else(|| BackupError::NotFound(unknown_tier(config, name)))?;
    let mut repo = open(tier, keys)?;
    for (_, offsite) in crate::config::replication_pairs(&config.config.jobs)
        .into_iter()
        .filter(|(landing, _)| landing == name)
    {
        if let Some(copy) = config.config.tiers.get(&offsite) {
            match storage(copy) {
                Ok(s) => repo = repo.with_fallback(s),
                Err(err) => {
                    tracing::warn!(tier = offsite, cause = %err, "offsite tier unusable as a fallback");
                }
            }
        }
    }
    Ok(repo)
}

/// "no tier named X; the config has a, b".
pub fn unknown_tier(config: &LoadedConfig, name: &str) -> String {
    let known: Vec<&str> = config.config.tiers.keys().map(String::as_str).collect();
    if known.is_empty() {
        format!("no tier named {name:?}: the config defines no tiers")
    } else {
        format!(
            "no tier named {name:?}; the config has {}",
            known.join(", ")
        )
    }
}
