//! Tiers at run time: opening the repository a tier holds (a directory or an S3
//! prefix), with reads that fall back to a job's offsite copies; choosing the tiers a
//! request is about; keeping the offsite copies in step (`replication`); and the
//! catalog's caches of what each tier holds (`snapshot_cache`, `index_cache`).
//!
//! Tiers sit below backups and jobs: they know the config and the catalog, never the
//! code that writes snapshots. Everything here but the snapshot listing is blocking;
//! handlers and workers run it on the blocking pool.

pub mod index_cache;
pub mod replication;
pub mod snapshot_cache;

use std::sync::Arc;

use drd_core::catalog::{Catalog, CatalogError};
use drd_core::config::{JobConfig, LoadedConfig, TierConfig};
use drd_repo::{KeySet, Repository, Storage};

/// Why a tier could not be chosen, opened or read.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The repository engine failed (opening, creating or reading the repository).
    #[error(transparent)]
    Repo(#[from] drd_repo::Error),
    /// The request names a tier or job the config does not have, or no job writes to
    /// any tier.
    #[error("{0}")]
    NotFound(String),
    /// The request fits more than one tier; the message says what to name.
    #[error("{0}")]
    Ambiguous(String),
    /// The catalog's snapshot cache could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl TierError {
    /// True when the error is about something that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            TierError::NotFound(_)
                | TierError::Repo(
                    drd_repo::Error::NoSnapshot(_) | drd_repo::Error::NotARepository { .. }
                )
        )
    }
}

/// Opens tiers' repositories. The daemon's opener serves index files from the
/// catalog's cache (see [`index_cache`]); [`TierOpener::offline`] reads tiers directly,
/// for code that runs without a daemon. [`crate::Backups`] owns the daemon's; it is
/// cheap to clone into blocking tasks.
#[derive(Clone)]
pub struct TierOpener {
    index_cache: Option<Catalog>,
}

impl TierOpener {
    /// An opener that serves index files from `catalog`.
    pub fn with_index_cache(catalog: Catalog) -> TierOpener {
        TierOpener {
            index_cache: Some(catalog),
        }
    }

    /// An opener without a catalog: every read goes to the tier.
    pub fn offline() -> TierOpener {
        TierOpener { index_cache: None }
    }

    /// The storage behind `tier`, with index files served from the catalog when this
    /// opener has one.
    pub fn storage(&self, tier: &TierConfig) -> Result<Arc<dyn Storage>, TierError> {
        let raw = raw_storage(tier)?;
        Ok(match &self.index_cache {
            Some(catalog) => Arc::new(index_cache::CachedIndex::new(raw, catalog.clone())),
            None => raw,
        })
    }

    /// Opens the repository on `tier`.
    pub fn open(&self, tier: &TierConfig, keys: &KeySet) -> Result<Repository, TierError> {
        let repo =
            Repository::open_on(self.storage(tier)?, keys, drd_repo::RepoOptions::default())?;
        log_index_warnings(&repo, tier);
        Ok(repo)
    }

    /// Opens the repository on `tier`, creating it on first use (an empty directory or
    /// prefix).
    pub fn open_or_init(&self, tier: &TierConfig, keys: &KeySet) -> Result<Repository, TierError> {
        let storage = self.storage(tier)?;
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
    /// tiers that copy it as fallbacks, so a blob missing or damaged there is read from
    /// a copy; an offsite tier is read on its own.
    pub fn open_for_read(
        &self,
        config: &LoadedConfig,
        name: &str,
    ) -> Result<Repository, TierError> {
        let tier = config.tier(name).map_err(TierError::NotFound)?;
        let mut repo = self.open(tier, config.keys()?)?;
        for (_, offsite) in drd_core::config::replication_pairs(&config.config.jobs)
            .into_iter()
            .filter(|(landing, _)| landing == name)
        {
            if let Some(copy) = config.config.tiers.get(&offsite) {
                match self.storage(copy) {
                    Ok(s) => repo = repo.with_fallback(s),
                    Err(err) => {
                        tracing::warn!(tier = offsite, cause = %err, "offsite tier unusable as a fallback");
                    }
                }
            }
        }
        Ok(repo)
    }

    /// Opens, for reading, the one repository a request about `job` and `tier` means
    /// (see [`for_request`]): what a restore reads from. Returns the tier's name too.
    pub fn open_for_job(
        &self,
        config: &LoadedConfig,
        job: Option<&str>,
        tier: Option<&str>,
    ) -> Result<(String, Repository), TierError> {
        let name = match for_request(config, job, tier)?.as_slice() {
            [(name, _)] => name.clone(),
            [] => {
                return Err(TierError::NotFound(
                    "no job writes to any tier, so there is nothing to restore from".to_owned(),
                ))
            }
            _ => {
                return Err(TierError::Ambiguous(
                    "jobs write to more than one repository; name the job with --job".to_owned(),
                ))
            }
        };
        // A landing tier reads a blob it lacks (or holds damaged) from its copies.
        let repo = self.open_for_read(config, &name)?;
        Ok((name, repo))
    }
}

/// The storage behind `tier`, read directly (what `verify` wants).
pub fn raw_storage(tier: &TierConfig) -> Result<Arc<dyn Storage>, TierError> {
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
/// catalog's index cache: for `verify` and `repair`, which must see what the tier
/// holds.
pub fn open_uncached(tier: &TierConfig, keys: &KeySet) -> Result<Repository, TierError> {
    Ok(Repository::open_on(
        raw_storage(tier)?,
        keys,
        drd_repo::RepoOptions::default(),
    )?)
}

/// Logs what of the repository's index could not be read: the work goes on without it
/// (the pack headers stand in), and `drctl repair index` mends it.
fn log_index_warnings(repo: &Repository, tier: &TierConfig) {
    for warning in repo.index_warnings() {
        tracing::warn!(tier = %tier.location(), "{warning}");
    }
}

/// Job `name`'s landing tier (its first), as (job, tier name, tier).
pub fn landing<'a>(
    config: &'a LoadedConfig,
    name: &str,
) -> Result<(&'a JobConfig, &'a str, &'a TierConfig), TierError> {
    let job = config.job(name).map_err(TierError::NotFound)?;
    // Config validation guarantees the job has one tier and that it exists.
    let tier_name = job.tiers.first().map(String::as_str).unwrap_or_default();
    let tier = config
        .config
        .tiers
        .get(tier_name)
        .ok_or_else(|| TierError::NotFound(format!("job {name:?} names no defined tier")))?;
    Ok((job, tier_name, tier))
}

/// The tiers a request is about, as (name, tier): `tier` if named (checked against
/// `job`'s tiers when both are given), else the named job's landing tier, else every
/// tier some job lands its backups on.
pub fn for_request(
    config: &LoadedConfig,
    job: Option<&str>,
    tier: Option<&str>,
) -> Result<Vec<(String, TierConfig)>, TierError> {
    if let Some(name) = tier {
        let found = config.tier(name).map_err(TierError::NotFound)?;
        if let Some(job) = job {
            let (job_config, _, _) = landing(config, job)?;
            if !job_config.tiers.iter().any(|t| t == name) {
                return Err(TierError::NotFound(format!(
                    "job {job:?} does not write to tier {name:?}; its tiers are {}",
                    job_config.tiers.join(", ")
                )));
            }
        }
        return Ok(vec![(name.to_owned(), found.clone())]);
    }
    if let Some(job) = job {
        let (_, tier_name, tier) = landing(config, job)?;
        return Ok(vec![(tier_name.to_owned(), tier.clone())]);
    }
    let mut tiers: Vec<(String, TierConfig)> = config
        .config
        .jobs
        .values()
        .filter_map(|j| j.tiers.first())
        .filter_map(|t| config.config.tiers.get_key_value(t))
        .map(|(name, tier)| (name.clone(), tier.clone()))
        .collect();
    tiers.sort_by(|a, b| a.0.cmp(&b.0));
    tiers.dedup_by(|a, b| a.0 == b.0);
    Ok(tiers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached_index_files(catalog: &Catalog) -> i64 {
        catalog
            .call_blocking("count cached index files", |c| {
                c.query_row("SELECT COUNT(*) FROM index_files", [], |r| r.get(0))
            })
            .unwrap()
    }

    /// The index cache belongs to the opener that holds it: the daemon's caches what
    /// it writes, an offline opener in the same process never touches that catalog.
    #[test]
    fn only_an_opener_with_a_catalog_caches_index_files() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        let tier = TierConfig::Dir {
            path: dir.path().join("tier"),
        };
        std::fs::create_dir_all(dir.path().join("tier/index")).unwrap();

        let write = |opener: &TierOpener, name: &str| {
            let storage = opener.storage(&tier).unwrap();
            storage.write_atomic(name, b"an index file").unwrap();
        };
        let offline = TierOpener::offline();
        write(&offline, "index/aa");
        assert_eq!(cached_index_files(&catalog), 0);

        let daemon = TierOpener::with_index_cache(catalog.clone());
        write(&daemon, "index/bb");
        assert_eq!(cached_index_files(&catalog), 1);
        // Both files are on the tier whichever opener wrote them.
        let listed = offline.storage(&tier).unwrap().list("index").unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
    }
}
