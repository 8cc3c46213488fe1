//! `[tiers.NAME]`: where repositories live. A job's first tier is where its backups
//! land; every further tier is an offsite copy that the replication worker keeps in
//! step with the first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::JobConfig;

/// One repository location.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TierConfig {
    /// A directory on a local disk or a mount (another disk, NFS, USB).
    Dir {
        /// The repository directory, created and initialized on first use.
        path: PathBuf,
    },
    /// S3-compatible object storage.
    S3 {
        /// The endpoint URL (`https://s3.example.net`, or `http://127.0.0.1:9000` for a
        /// server on this host); unset means AWS itself, or `AWS_ENDPOINT_URL`.
        #[serde(default)]
        endpoint: Option<String>,
        /// The bucket, which must exist.
        bucket: String,
        /// A key prefix inside the bucket, such as `web-1/`, so several hosts can
        /// share one bucket.
        #[serde(default)]
        prefix: String,
        /// The region; unset means `AWS_REGION` / `AWS_DEFAULT_REGION`, else
        /// `us-east-1`.
        #[serde(default)]
        region: Option<String>,
        /// The access key id; unset means `AWS_ACCESS_KEY_ID` in drd's environment.
        #[serde(default)]
        access_key_id: Option<String>,
        /// The secret key; unset means `AWS_SECRET_ACCESS_KEY`. Prefer the
        /// environment (systemd `LoadCredential=` or an `EnvironmentFile=`) over
        /// writing it here.
        #[serde(default)]
        secret_access_key: Option<String>,
    },
}

/// The kinds of tier, for messages.
pub type TierKind = &'static str;

impl TierConfig {
    /// `dir` or `s3`.
    pub fn kind(&self) -> TierKind {
        match self {
            TierConfig::Dir { .. } => "dir",
            TierConfig::S3 { .. } => "s3",
        }
    }

    /// Where the tier is, for people: a path or an `s3://bucket/prefix` URL.
    pub fn location(&self) -> String {
        match self {
            TierConfig::Dir { path } => path.display().to_string(),
            TierConfig::S3 { bucket, prefix, .. } => {
                format!("s3://{bucket}/{}", prefix.trim_start_matches('/'))
            }
        }
    }

    /// Makes a relative directory absolute against `base`.
    pub(super) fn resolve(&mut self, base: &Path) {
        if let TierConfig::Dir { path } = self {
            *path = base.join(&*path);
        }
    }
}

/// Checks the tiers and how jobs use them; `problem(field, message)` collects what is
/// wrong.
pub(super) fn check(
    tiers: &BTreeMap<String, TierConfig>,
    jobs: &BTreeMap<String, JobConfig>,
    problem: &mut dyn FnMut(&str, String),
) {
    for (name, tier) in tiers {
        if !super::jobs::valid_name(name) {
            problem(&format!("tiers.{name}"), super::jobs::NAME_RULE.to_owned());
        }
        match tier {
            TierConfig::Dir { path } if path.as_os_str().is_empty() => {
                problem(
                    &format!("tiers.{name}.path"),
                    "must not be empty".to_owned(),
                );
            }
            TierConfig::S3 {
                bucket, endpoint, ..
            } => {
                if bucket.is_empty() || bucket.contains('/') {
                    problem(
                        &format!("tiers.{name}.bucket"),
                        "name one bucket (no slashes; put folders in `prefix`)".to_owned(),
                    );
                }
                if let Some(url) = endpoint {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        problem(
                            &format!("tiers.{name}.endpoint"),
                            format!("{url:?} is not an http:// or https:// URL"),
                        );
                    }
                }
            }
            TierConfig::Dir { .. } => {}
        }
    }
    // A tier holds one repository: a tier that is some job's landing tier cannot also
    // be another tier's copy, and an offsite tier copies exactly one landing tier.
    let mut copies_of: HashMap<&str, (&str, &str)> = HashMap::new();
    let landing: HashMap<&str, &str> = jobs
        .iter()
        .filter_map(|(job, j)| j.tiers.first().map(|t| (t.as_str(), job.as_str())))
        .collect();
    for (job, j) in jobs {
        let Some(first) = j.tiers.first() else {
            continue;
        };
        for (i, offsite) in j.tiers.iter().enumerate().skip(1) {
            let field = format!("jobs.{job}.tiers[{i}]");
            if j.tiers[..i].contains(offsite) {
                problem(&field, format!("tier {offsite:?} is listed twice"));
            } else if let Some(other) = landing.get(offsite.as_str()) {
                problem(
                    &field,
                    format!(
                        "tier {offsite:?} is where job {other:?} lands its backups, so it \
                         cannot also be a copy of {first:?}; give the copy a tier of its own"
                    ),
                );
            } else if let Some((source, by)) = copies_of.get(offsite.as_str()) {
                if *source != first.as_str() {
                    problem(
                        &field,
                        format!(
                            "tier {offsite:?} already copies {source:?} (job {by:?}); one \
                             offsite tier copies one landing tier"
                        ),
                    );
                }
            } else {
                copies_of.insert(offsite, (first, job));
            }
        }
    }
}

/// Every (landing tier, offsite tier) pair the jobs ask for, sorted and without
/// repeats.
pub fn replication_pairs(jobs: &BTreeMap<String, JobConfig>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = jobs
        .values()
        .filter_map(|j| j.tiers.split_first())
        .flat_map(|(first, rest)| rest.iter().map(|t| (first.clone(), t.clone())))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}
