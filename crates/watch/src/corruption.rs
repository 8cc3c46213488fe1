//! The corruption monitor: SQLite databases checked with `quick_check` and
//! `integrity_check`, checksum manifests of protected paths, and rolling verification
//! of every repository pack. One worker wakes every `interval`; each kind of check
//! runs when its own cadence says, and every check is a reading of 1 (damaged) or 0
//! (sound) handed to [`Watch::observe`], which decides, audits and acts.
//!
//! Checks: `sqlite PATH` (one per database), `protected PATH` (one per protected
//! path), `packs TIER` (one per tier a job writes to). Long work (a copy and a pragma,
//! hashing, reading packs) runs on the blocking pool and stops at the daemon's stop
//! token. When each check last ran, and its last verdict, is kept in the catalog, so
//! a restart neither repeats a daily `integrity_check` nor forgets a finding.

pub mod packs;
pub mod protected;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drd_core::audit::{Actor, Outcome};
use drd_core::config::corruption::{CorruptionConfig, EXPECTED_CHANGE_TIMEOUT};
use drd_core::config::policy::ActionConfig;
use drd_core::config::threshold::{Confirm, Direction, Rule};
use drd_core::config::LoadedConfig;
use drd_core::workers::Worker;
use drd_proto::text::bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::checks::{Reading, Sample};
use crate::{store, Watch};

use sqlite::Pragma;

/// A finding: 1 fires, 0 clears, decided on the first sample (each is already a
/// considered verdict, not a noisy measurement).
const FINDING: Rule = Rule {
    direction: Direction::Above,
    fire: 1.0,
    clear: 0.0,
    confirm: Confirm::For(0),
    clear_confirm: None,
};

const SQLITE_KEY: &str = "corruption/sqlite/";
const PROTECTED_KEY: &str = "corruption/protected/";

/// A verdict as kept between wakes and restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Verdict {
    damaged: bool,
    evidence: String,
}

/// What is kept of one database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DbState {
    quick_ms: Option<i64>,
    integrity_ms: Option<i64>,
    /// The newest verdict of either pragma.
    quick: Option<Verdict>,
    /// The newest `integrity_check` verdict: a damaged one stands until the next
    /// `integrity_check` says otherwise, since `quick_check` looks at less.
    integrity: Option<Verdict>,
    /// Why the newest check could not be decided (not kept across restarts).
    #[serde(skip)]
    undecided: Option<String>,
}

impl DbState {
    /// The pragma due now, if any. While an `integrity_check` finding stands, the
    /// next one comes on the quick cadence, so a mended database clears soon.
    fn due(&self, now_ms: i64, quick: Duration, integrity: Duration) -> Option<Pragma> {
        let integrity = if self.integrity.as_ref().is_some_and(|v| v.damaged) {
            quick.min(integrity)
        } else {
            integrity
        };
        let past = |at: Option<i64>, every: Duration| {
            at.is_none_or(|at| now_ms - at >= every.as_millis() as i64)
        };
        if past(self.integrity_ms, integrity) {
            Some(Pragma::Integrity)
        } else if past(self.quick_ms, quick) {
            Some(Pragma::Quick)
        } else {
            None
        }
    }

    fn note(&mut self, pragma: Pragma, verdict: Verdict, now_ms: i64) {
        self.undecided = None;
        self.quick_ms = Some(now_ms);
        if pragma == Pragma::Integrity {
            self.integrity_ms = Some(now_ms);
            self.integrity = Some(verdict.clone());
        }
        self.quick = Some(verdict);
    }

    /// The finding: the quick verdict, or a standing integrity one.
    fn verdict(&self) -> Option<&Verdict> {
        match (&self.quick, &self.integrity) {
            (_, Some(integrity)) if integrity.damaged => Some(integrity),
            (quick, integrity) => quick.as_ref().or(integrity.as_ref()),
        }
    }
}

/// What is kept of one protected path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RootState {
    /// Its baseline is in `protected_files`.
    baselined: bool,
    checked_ms: Option<i64>,
    verdict: Option<Verdict>,
    #[serde(skip)]
    undecided: Option<String>,
}

/// The corruption monitor's worker.
pub struct CorruptionMonitor {
    watch: Arc<Watch>,
    interval: Duration,
    loaded: bool,
    databases: BTreeMap<PathBuf, DbState>,
    roots: BTreeMap<PathBuf, RootState>,
    /// Damage outside packs per tier, as the newest read saw it (see [`packs`]).
    outside_packs: BTreeMap<String, Vec<String>>,
    /// The newest reading of each tier, repeated while nothing is read.
    tiers: BTreeMap<String, Result<Sample, String>>,
    had_checks: bool,
    /// State keys of databases and paths taken out of the config, to remove.
    gone: Vec<String>,
}

impl CorruptionMonitor {
    /// The monitor of the databases, files and repositories `watch`'s config names.
    pub fn new(watch: Arc<Watch>) -> CorruptionMonitor {
        CorruptionMonitor {
            watch,
            interval: Duration::from_secs(60),
            loaded: false,
            databases: BTreeMap::new(),
            roots: BTreeMap::new(),
            outside_packs: BTreeMap::new(),
            tiers: BTreeMap::new(),
            had_checks: false,
            gone: Vec::new(),
        }
    }

    async fn load(&mut self) {
        if self.loaded {
            return;
        }
        let catalog = &self.watch.core.catalog;
        match store::load::<DbState>(catalog, SQLITE_KEY).await {
            Ok(kept) => {
                for (key, state) in kept {
                    self.databases
                        .insert(PathBuf::from(&key[SQLITE_KEY.len()..]), state);
                }
            }
            Err(err) => tracing::warn!(cause = %err, "cannot read the SQLite checks' state"),
        }
        match store::load::<RootState>(catalog, PROTECTED_KEY).await {
            Ok(kept) => {
                for (key, state) in kept {
                    self.roots
                        .insert(PathBuf::from(&key[PROTECTED_KEY.len()..]), state);
                }
            }
            Err(err) => tracing::warn!(cause = %err, "cannot read the protected paths' state"),
        }
        self.loaded = true;
    }

    async fn save(&mut self) {
        let gone = std::mem::take(&mut self.gone);
        let now = self.watch.now_ms();
        let catalog = &self.watch.core.catalog;
        let dbs: Vec<(String, DbState)> = self
            .databases
            .iter()
            .map(|(path, s)| (format!("{SQLITE_KEY}{}", path.display()), s.clone()))
            .collect();
        let roots: Vec<(String, RootState)> = self
            .roots
            .iter()
            .map(|(path, s)| (format!("{PROTECTED_KEY}{}", path.display()), s.clone()))
            .collect();
        let saved = match store::save(catalog, &dbs, gone, now).await {
            Ok(()) => store::save(catalog, &roots, Vec::new(), now).await,
            Err(err) => Err(err),
        };
        if let Err(err) = saved {
            tracing::warn!(cause = %err, "cannot keep the corruption monitor's state");
        }
    }

    /// Runs the due pragma of each database; one reading each.
    async fn databases(
        &mut self,
        config: &CorruptionConfig,
        did: &mut Vec<String>,
    ) -> Vec<Reading> {
        let scratch = self.watch.core.state_dir.join("scratch");
        let cancel = self.watch.core.stopping.clone();
        let mut readings = Vec::new();
        for db in &config.sqlite {
            let (quick, integrity) = config.cadences(db);
            let now = self.watch.now_ms();
            let state = self.databases.entry(db.path.clone()).or_default();
            if let Some(pragma) = state.due(now, quick, integrity) {
                let (path, scratch, cancel) = (db.path.clone(), scratch.clone(), cancel.clone());
                let result = tokio::task::spawn_blocking(move || {
                    sqlite::check(&path, pragma, &scratch, &cancel)
                })
                .await
                .unwrap_or_else(|err| Err(format!("the check failed: {err}")));
                match result {
                    Ok(verdict) => {
                        let verdict = Verdict {
                            damaged: verdict.damaged,
                            evidence: format!("{}: {}", db.path.display(), verdict.said),
                        };
                        state.note(pragma, verdict, now);
                    }
                    Err(why) => state.undecided = Some(why),
                }
                did.push(format!("{} {}", pragma.name(), db.path.display()));
            }
            readings.push(reading(
                format!("sqlite {}", db.path.display()),
                config.sqlite_actions(db),
                state.verdict(),
                state.undecided.as_deref(),
                ("damaged or unreadable", "passes SQLite's checks"),
            ));
        }
        readings
    }

    /// Hashes each due protected path and compares it with its baseline; one
    /// reading each.
    async fn protected(
        &mut self,
        config: &CorruptionConfig,
        did: &mut Vec<String>,
    ) -> Vec<Reading> {
        let catalog = self.watch.core.catalog.clone();
        let cancel = self.watch.core.stopping.clone();
        // Paths taken out of the config lose their baseline; one that overlaps a path
        // still protected makes that one start afresh, since they share rows.
        let dropped: Vec<PathBuf> = self
            .roots
            .keys()
            .filter(|root| !config.protected.contains(root))
            .cloned()
            .collect();
        for root in dropped {
            self.roots.remove(&root);
            self.gone.push(format!("{PROTECTED_KEY}{}", root.display()));
            if let Err(err) = protected::set_baseline(&catalog, &root, None, 0).await {
                tracing::warn!(path = %root.display(), cause = %err, "cannot drop a protected path's baseline");
            }
            for (other, state) in &mut self.roots {
                if other.starts_with(&root) || root.starts_with(other) {
                    state.baselined = false;
                }
            }
        }

        let mut readings = Vec::new();
        for root in &config.protected {
            let now = self.watch.now_ms();
            let every = config.protected_every.as_millis() as i64;
            let due = self
                .roots
                .get(root)
                .is_none_or(|s| !s.baselined || s.checked_ms.is_none_or(|at| now - at >= every));
            if due {
                let outcome = self.check_root(config, root, &cancel, now).await;
                let state = self.roots.entry(root.clone()).or_default();
                match outcome {
                    Ok(verdict) => {
                        state.undecided = None;
                        state.verdict = Some(verdict);
                        state.checked_ms = Some(now);
                    }
                    Err(why) => state.undecided = Some(why),
                }
                did.push(format!("protected {}", root.display()));
            }
            let state = self.roots.entry(root.clone()).or_default();
            readings.push(reading(
                format!("protected {}", root.display()),
                &config.on_fire,
                state.verdict.as_ref(),
                state.undecided.as_deref(),
                (
                    "changed, and no expected_change explains it",
                    "as its baseline",
                ),
            ));
        }
        readings
    }

    async fn check_root(
        &mut self,
        config: &CorruptionConfig,
        root: &Path,
        cancel: &CancellationToken,
        now: i64,
    ) -> Result<Verdict, String> {
        let catalog = self.watch.core.catalog.clone();
        let baselined = self.roots.get(root).is_some_and(|s| s.baselined);
        let (path, token) = (root.to_path_buf(), cancel.clone());
        let scanned = tokio::task::spawn_blocking(move || protected::scan(&path, &token))
            .await
            .unwrap_or_else(|err| Err(format!("hashing failed: {err}")));
        if cancel.is_cancelled() {
            return Err("drd is stopping".to_owned());
        }
        let manifest = match scanned {
            Ok(manifest) => manifest,
            // Gone after its baseline: every file was removed.
            Err(_) if baselined && std::fs::symlink_metadata(root).is_err() => Default::default(),
            Err(why) => return Err(why),
        };
        let files = manifest.len();
        if !baselined {
            protected::set_baseline(&catalog, root, Some(manifest), now)
                .await
                .map_err(|e| e.to_string())?;
            self.roots.entry(root.to_path_buf()).or_default().baselined = true;
            return Ok(Verdict {
                damaged: false,
                evidence: format!("{}: baseline recorded ({files} files)", root.display()),
            });
        }
        let base = protected::baseline(&catalog, root)
            .await
            .map_err(|e| e.to_string())?;
        let changes = protected::diff(&base, &manifest);
        if changes.is_empty() {
            return Ok(Verdict {
                damaged: false,
                evidence: format!("{}: {files} files as their baseline", root.display()),
            });
        }
        let Some(hook) = &config.expected_change else {
            return Ok(Verdict {
                damaged: true,
                evidence: format!(
                    "{}: {} (no expected_change hook is configured to accept changes)",
                    root.display(),
                    changes.describe()
                ),
            });
        };
        let ran = hook
            .command(EXPECTED_CHANGE_TIMEOUT)
            .stdin(changes.paths().into_bytes())
            .cancel_on(cancel.clone())
            .run()
            .await;
        match ran {
            Ok(finished) if finished.success() => {
                protected::set_baseline(&catalog, root, Some(manifest), now)
                    .await
                    .map_err(|e| e.to_string())?;
                let detail = format!(
                    "{}: {} accepted by expected_change {}; these are the new baseline",
                    root.display(),
                    changes.describe(),
                    hook.program()
                );
                self.watch
                    .core
                    .audit(
                        &Actor::Monitor(format!("corruption/protected {}", root.display())),
                        "protected change accepted",
                        Outcome::Ok,
                        detail.clone(),
                    )
                    .await;
                Ok(Verdict {
                    damaged: false,
                    evidence: detail,
                })
            }
            Ok(finished) => Ok(Verdict {
                damaged: true,
                evidence: format!(
                    "{}: {} (expected_change {} {finished})",
                    root.display(),
                    changes.describe(),
                    hook.program()
                ),
            }),
            Err(err) => Ok(Verdict {
                damaged: true,
                evidence: format!(
                    "{}: {} (expected_change could not run: {err})",
                    root.display(),
                    changes.describe()
                ),
            }),
        }
    }

    /// Reads this wake's share of packs; one reading per tier.
    async fn packs(&mut self, config: &Arc<LoadedConfig>, did: &mut Vec<String>) -> Vec<Reading> {
        let corruption = config.config.monitors.corruption.clone();
        let mut tiers: Vec<String> = config
            .config
            .jobs
            .values()
            .flat_map(|job| job.tiers.iter().cloned())
            .collect();
        tiers.sort();
        tiers.dedup();
        let job = PackJob {
            config: config.clone(),
            tiers: tiers.clone(),
            catalog: self.watch.core.catalog.clone(),
            cancel: self.watch.core.stopping.clone(),
            now_ms: self.watch.now_ms(),
            within: corruption.verify_within,
            budget: corruption.verify_budget.0,
            interval: corruption.interval,
            outside_packs: self.outside_packs.clone(),
        };
        let results = tokio::task::spawn_blocking(move || job.run())
            .await
            .unwrap_or_default();
        let mut read = (0, 0);
        for result in results {
            read.0 += result.read.0;
            read.1 += result.read.1;
            self.outside_packs
                .insert(result.tier.clone(), result.outside);
            if let Some(sample) = result.sample {
                self.tiers.insert(result.tier, sample);
            }
        }
        self.tiers.retain(|tier, _| tiers.contains(tier));
        self.outside_packs.retain(|tier, _| tiers.contains(tier));
        if read.0 > 0 {
            did.push(format!("read {} packs ({})", read.0, bytes(read.1)));
        }
        self.tiers
            .iter()
            .map(|(tier, sample)| Reading {
                check: format!("packs {tier}"),
                rule: FINDING,
                actions: corruption.on_fire.clone(),
                sample: sample.clone(),
                fire: "a damaged pack is known".to_owned(),
                clear: "no damaged pack".to_owned(),
                breaker: None,
            })
            .collect()
    }
}

/// A check's reading from its newest verdict.
fn reading(
    check: String,
    actions: &[ActionConfig],
    verdict: Option<&Verdict>,
    undecided: Option<&str>,
    (fire, clear): (&str, &str),
) -> Reading {
    let sample = match (undecided, verdict) {
        (Some(why), _) => Err(why.to_owned()),
        (None, None) => Err("not checked yet".to_owned()),
        (None, Some(v)) => Ok(Sample {
            value: if v.damaged { 1.0 } else { 0.0 },
            shown: if v.damaged { "damaged" } else { "sound" }.to_owned(),
            evidence: v.evidence.clone(),
        }),
    };
    Reading {
        check,
        rule: FINDING,
        actions: actions.to_vec(),
        sample,
        fire: fire.to_owned(),
        clear: clear.to_owned(),
        breaker: None,
    }
}

/// One wake's pack reading, on the blocking pool.
struct PackJob {
    config: Arc<LoadedConfig>,
    tiers: Vec<String>,
    catalog: drd_core::catalog::Catalog,
    cancel: CancellationToken,
    now_ms: i64,
    within: Duration,
    budget: u64,
    interval: Duration,
    outside_packs: BTreeMap<String, Vec<String>>,
}

/// What one tier's share came to.
#[derive(Default)]
struct TierResult {
    tier: String,
    /// `None`: nothing new to say (stopping).
    sample: Option<Result<Sample, String>>,
    outside: Vec<String>,
    /// Packs and bytes read.
    read: (u64, u64),
}

impl PackJob {
    fn run(self) -> Vec<TierResult> {
        let mut budget = self.budget;
        let mut results = Vec::new();
        for tier in &self.tiers {
            if self.cancel.is_cancelled() {
                break;
            }
            let mut result = TierResult {
                tier: tier.clone(),
                outside: self.outside_packs.get(tier).cloned().unwrap_or_default(),
                ..TierResult::default()
            };
            result.sample = Some(self.tier(tier, &mut budget, &mut result));
            results.push(result);
        }
        results
    }

    fn tier(
        &self,
        name: &str,
        budget: &mut u64,
        result: &mut TierResult,
    ) -> Result<Sample, String> {
        let tier = self.config.tier(name)?;
        let keys = self.config.keys().map_err(|e| e.to_string())?;
        let repo = match drd_backup::tiers::open_uncached(tier, keys) {
            Ok(repo) => repo,
            Err(err) if err.is_not_found() => {
                return Ok(Sample {
                    value: 0.0,
                    shown: "no repository yet".to_owned(),
                    evidence: format!("tier {name}: no repository yet ({err})"),
                })
            }
            Err(err) => return Err(format!("cannot open tier {name}: {err}")),
        };
        let all = repo.indexed_packs().map_err(|e| e.to_string())?;
        let coverage =
            packs::sync(&self.catalog, name, &all, self.now_ms).map_err(|e| e.to_string())?;
        let within_ms = self.within.as_millis() as i64;
        let chosen = packs::choose(&all, &coverage, self.now_ms, within_ms, (*budget).max(1));
        let previous = std::mem::take(&mut result.outside);
        let mut confirmed = Vec::new();
        if !chosen.is_empty() {
            let ids: Vec<_> = chosen.iter().map(|(id, _)| *id).collect();
            let report = repo
                .verify_packs(&ids, 1, &mut |_| {})
                .map_err(|e| format!("cannot verify tier {name}: {e}"))?;
            let (by_pack, outside) = packs::sort_problems(&repo, &all, &report.problems);
            packs::record(&self.catalog, name, &chosen, by_pack, self.now_ms)
                .map_err(|e| e.to_string())?;
            let spent: u64 = chosen.iter().map(|(_, size)| size).sum();
            *budget = budget.saturating_sub(spent);
            result.read = (chosen.len() as u64, spent);
            confirmed = outside
                .iter()
                .filter(|p| previous.contains(p))
                .cloned()
                .collect();
            result.outside = outside;
        } else {
            // Nothing read: what stood, stands.
            confirmed.clone_from(&previous);
            result.outside = previous;
        }

        let coverage =
            packs::sync(&self.catalog, name, &all, self.now_ms).map_err(|e| e.to_string())?;
        let damaged: Vec<String> = coverage
            .values()
            .filter_map(|c| c.problem.clone())
            .chain(confirmed)
            .collect();
        let total: u64 = all.iter().map(|(_, size)| size).sum();
        if !damaged.is_empty() {
            return Ok(Sample {
                value: 1.0,
                shown: format!("{} problems", damaged.len()),
                evidence: format!("tier {name}: {}", damaged.join("\n")),
            });
        }
        let fresh = coverage
            .values()
            .filter(|c| c.checked_ms.is_some_and(|at| self.now_ms - at < within_ms))
            .count();
        let mut evidence = format!(
            "tier {name}: {} packs ({}), {fresh} read within {}, none damaged",
            all.len(),
            bytes(total),
            humantime::format_duration(self.within)
        );
        if result.read.0 > 0 {
            evidence.push_str(&format!(
                "; read {} packs ({}) this time",
                result.read.0,
                bytes(result.read.1)
            ));
        }
        // Every pack is due again at half the window; the budget must cover that.
        let wakes = (self.within.as_secs_f64() / 2.0 / self.interval.as_secs_f64()).max(1.0);
        if total as f64 > self.budget as f64 * wakes {
            evidence.push_str(&format!(
                "; verify_budget {} per {} cannot read {} within half of verify_within: \
                 raise verify_budget",
                bytes(self.budget),
                humantime::format_duration(self.interval),
                bytes(total)
            ));
        }
        Ok(Sample {
            value: 0.0,
            shown: "sound".to_owned(),
            evidence,
        })
    }
}

#[async_trait]
impl Worker for CorruptionMonitor {
    fn name(&self) -> &'static str {
        "monitor corruption"
    }

    async fn step(&mut self) -> Result<String, String> {
        let config = self.watch.core.config();
        let corruption = config.config.monitors.corruption.clone();
        self.interval = corruption.interval;
        if corruption.is_empty() {
            if self.had_checks {
                self.watch.observe("corruption", Vec::new()).await;
                self.had_checks = false;
            }
            return Ok("nothing configured in [monitors.corruption]".to_owned());
        }
        self.load().await;
        let mut did = Vec::new();
        let mut readings = self.databases(&corruption, &mut did).await;
        readings.extend(self.protected(&corruption, &mut did).await);
        if corruption.verify {
            readings.extend(self.packs(&config, &mut did).await);
        } else {
            self.tiers.clear();
        }
        let gone: Vec<String> = self
            .databases
            .keys()
            .filter(|path| !corruption.sqlite.iter().any(|db| &db.path == *path))
            .map(|path| format!("{SQLITE_KEY}{}", path.display()))
            .collect();
        self.gone.extend(gone);
        self.databases
            .retain(|path, _| corruption.sqlite.iter().any(|db| &db.path == path));
        self.save().await;
        let findings = readings
            .iter()
            .filter(|r| r.sample.as_ref().is_ok_and(|s| s.value >= 1.0))
            .count();
        let checks = readings.len();
        self.had_checks = true;
        self.watch.observe("corruption", readings).await;
        let mut detail = if did.is_empty() {
            "nothing due".to_owned()
        } else {
            did.join(", ")
        };
        detail.push_str(&format!("; {checks} checks, {findings} findings"));
        Ok(detail)
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * 1000;
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn verdict(damaged: bool) -> Verdict {
        Verdict {
            damaged,
            evidence: String::new(),
        }
    }

    #[test]
    fn integrity_first_then_quick_hourly_and_integrity_daily() {
        let mut db = DbState::default();
        assert_eq!(db.due(0, HOUR, DAY), Some(Pragma::Integrity));
        db.note(Pragma::Integrity, verdict(false), 0);
        assert_eq!(db.due(H / 2, HOUR, DAY), None);
        assert_eq!(db.due(H, HOUR, DAY), Some(Pragma::Quick));
        db.note(Pragma::Quick, verdict(false), H);
        assert_eq!(db.due(24 * H, HOUR, DAY), Some(Pragma::Integrity));
    }

    #[test]
    fn an_integrity_finding_stands_through_clean_quick_checks_until_rechecked() {
        let mut db = DbState::default();
        db.note(Pragma::Integrity, verdict(true), 0);
        assert!(db.verdict().unwrap().damaged);
        db.note(Pragma::Quick, verdict(false), H);
        assert!(db.verdict().unwrap().damaged);
        // Rechecked on the quick cadence while it stands.
        assert_eq!(db.due(H, HOUR, DAY), Some(Pragma::Integrity));
        db.note(Pragma::Integrity, verdict(false), H);
        assert!(!db.verdict().unwrap().damaged);
        // A quick finding shows even under a sound integrity verdict.
        db.note(Pragma::Quick, verdict(true), 2 * H);
        assert!(db.verdict().unwrap().damaged);
    }

    #[test]
    fn a_reading_says_damaged_sound_or_why_it_is_undecided() {
        let words = ("bad", "good");
        let r = reading("sqlite /a".into(), &[], Some(&verdict(true)), None, words);
        assert_eq!(r.sample.unwrap().value, 1.0);
        let r = reading("sqlite /a".into(), &[], Some(&verdict(false)), None, words);
        assert_eq!(r.sample.unwrap().value, 0.0);
        let r = reading(
            "sqlite /a".into(),
            &[],
            Some(&verdict(true)),
            Some("locked"),
            words,
        );
        assert_eq!(r.sample.unwrap_err(), "locked");
        let r = reading("sqlite /a".into(), &[], None, None, words);
        assert_eq!(r.sample.unwrap_err(), "not checked yet");
    }
}
