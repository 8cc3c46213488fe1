//! The network monitor: probes the targets `[monitors.network]` names (TCP connect,
//! HTTP GET, DNS lookup), each on its own interval and within its own timeout, all
//! due probes of a cycle at once, and hands [`Watch::observe`] one `target NAME`
//! check per target and one `partition` check over how many fail.
//!
//! A partition needs a quorum of targets failing for `hold`; a single failing target
//! (a host down, a name that does not resolve) only fires its own check.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drd_core::config::network::NetworkConfig;
use drd_core::probe::{Probe, Prober};
use drd_core::workers::Worker;
use futures::future::join_all;
use tokio::time::Instant;

use crate::checks::{thresholds_in_words, Reading, Sample};
use crate::Watch;

/// The network monitor's worker.
pub struct NetworkMonitor {
    watch: Arc<Watch>,
    probes: Probes,
    /// How long until the next cycle: the shortest interval configured.
    tick: Duration,
}

/// The network monitor's probing and reading, apart from its worker: each cycle
/// probes the targets that are due and turns every target's newest verdict into the
/// readings the checks decide on. The monitor feeds them to [`Watch::observe`]; the
/// network_partition drill feeds them to a check of its own, so a drill measures
/// the very logic that watches the host.
#[derive(Debug, Default)]
pub struct Probes {
    prober: Prober,
    /// Each target's newest verdict, by name.
    last: BTreeMap<String, Verdict>,
}

/// A target's newest probe.
#[derive(Debug)]
struct Verdict {
    probe: Probe,
    /// What answered, or why it did not.
    outcome: Result<String, String>,
    /// When it is probed next.
    due: Instant,
}

impl NetworkMonitor {
    /// The network monitor of `watch`.
    pub fn new(watch: Arc<Watch>) -> NetworkMonitor {
        NetworkMonitor {
            watch,
            probes: Probes::default(),
            tick: drd_core::config::monitors::DEFAULT_MONITOR_INTERVAL,
        }
    }
}

/// One target as this cycle probes it.
struct Target {
    name: String,
    probe: Probe,
    timeout: Duration,
    interval: Duration,
}

fn targets(network: &NetworkConfig) -> Vec<Target> {
    network
        .targets
        .iter()
        // A loaded config's targets are valid; a bad one never gets here.
        .filter_map(|t| {
            Some(Target {
                name: t.name().to_owned(),
                probe: t.probe().ok()?,
                timeout: t.timeout.unwrap_or(network.timeout),
                interval: t.interval.unwrap_or(network.interval),
            })
        })
        .collect()
}

#[async_trait]
impl Worker for NetworkMonitor {
    fn name(&self) -> &'static str {
        "monitor network"
    }

    async fn step(&mut self) -> Result<String, String> {
        let config = self.watch.core.config();
        let network = config.config.monitors.network.clone();
        let targets = targets(&network);
        self.tick = targets
            .iter()
            .map(|t| t.interval)
            .chain([network.interval])
            .min()
            .unwrap_or(network.interval);
        if targets.is_empty() {
            if !self.probes.last.is_empty() {
                self.probes.last.clear();
                self.watch.observe("network", Vec::new()).await;
            }
            return Ok("nothing configured in [monitors.network]".to_owned());
        }
        let readings = self.probes.cycle(&network).await;
        let failing = self.probes.failing();
        self.watch.observe("network", readings).await;
        Ok(format!(
            "{} targets, {failing} failing (partition at {})",
            targets.len(),
            network.quorum()
        ))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.tick).await;
    }
}

impl Probes {
    /// Probes every target of `network` that is due (never probed, its interval
    /// passed, or its probe changed), all at once, and returns one `target NAME`
    /// reading per target and the `partition` reading, last.
    pub async fn cycle(&mut self, network: &NetworkConfig) -> Vec<Reading> {
        let targets = targets(network);
        self.last
            .retain(|name, _| targets.iter().any(|t| &t.name == name));
        let now = Instant::now();
        let due: Vec<&Target> = targets
            .iter()
            .filter(|t| {
                self.last
                    .get(&t.name)
                    .is_none_or(|v| v.due <= now || v.probe != t.probe)
            })
            .collect();
        let prober = &self.prober;
        let outcomes = join_all(due.iter().map(|t| prober.probe(&t.probe, t.timeout))).await;
        for (target, outcome) in due.into_iter().zip(outcomes) {
            if let Err(why) = &outcome {
                tracing::debug!(target = %target.name, cause = %why, "network target did not answer");
            }
            self.last.insert(
                target.name.clone(),
                Verdict {
                    probe: target.probe.clone(),
                    outcome,
                    due: now + target.interval,
                },
            );
        }
        readings(network, &targets, &self.last)
    }

    /// How many targets failed their newest probe.
    pub fn failing(&self) -> usize {
        self.last.values().filter(|v| v.outcome.is_err()).count()
    }
}

/// One `target NAME` reading per target and the `partition` reading.
fn readings(
    network: &NetworkConfig,
    targets: &[Target],
    last: &BTreeMap<String, Verdict>,
) -> Vec<Reading> {
    let target_rule = network.target_rule();
    let (target_fire, target_clear) = thresholds_in_words(&target_rule, "");
    let mut failing = Vec::new();
    let mut answering = Vec::new();
    let mut readings = Vec::new();
    for target in targets {
        let Some(verdict) = last.get(&target.name) else {
            continue;
        };
        let (value, shown, evidence) = match &verdict.outcome {
            Ok(what) => {
                answering.push(target.name.as_str());
                (0.0, "answering", format!("{}: {what}", target.name))
            }
            Err(why) => {
                failing.push(format!("{} ({why})", target.name));
                (1.0, "failing", format!("{}: {why}", target.name))
            }
        };
        readings.push(Reading {
            check: format!("target {}", target.name),
            rule: target_rule,
            actions: network.on_target_fire.clone(),
            sample: Ok(Sample {
                value,
                shown: shown.to_owned(),
                evidence,
            }),
            fire: format!("failing{}", after(&target_fire)),
            clear: format!("answering{}", after(&target_clear)),
            breaker: None,
        });
    }
    let rule = network.partition_rule();
    let (fire, clear) = thresholds_in_words(&rule, " failing");
    let n = targets.len();
    readings.push(Reading {
        check: "partition".to_owned(),
        rule,
        actions: network.on_fire.clone(),
        sample: Ok(Sample {
            value: failing.len() as f64,
            shown: format!("{} of {n} failing", failing.len()),
            evidence: format!(
                "{} of {n} targets failing (quorum {}){}{}",
                failing.len(),
                network.quorum(),
                if failing.is_empty() {
                    String::new()
                } else {
                    format!("; failing: {}", failing.join(", "))
                },
                if answering.is_empty() {
                    String::new()
                } else {
                    format!("; answering: {}", answering.join(", "))
                }
            ),
        }),
        fire,
        clear,
        breaker: None,
    });
    readings
}

/// The confirmation part of a threshold in words (` for 60s`), without the level.
fn after(words: &str) -> &str {
    words.find(" for ").map_or("", |at| &words[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(probe: &Probe, ok: bool) -> Verdict {
        Verdict {
            probe: probe.clone(),
            outcome: if ok {
                Ok("fine".to_owned())
            } else {
                Err("refused".to_owned())
            },
            due: Instant::now(),
        }
    }

    #[test]
    fn the_partition_counts_failing_targets_and_names_them() {
        let text = r#"
            [monitors.network]
            targets = ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "dns://a.example"]
            hold = "10s"
        "#;
        let loaded =
            drd_core::config::Config::load_str(std::path::Path::new("/x/drd.toml"), text).unwrap();
        let network = &loaded.config.monitors.network;
        let targets = targets(network);
        let last: BTreeMap<String, Verdict> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), verdict(&t.probe, i == 2)))
            .collect();
        let readings = readings(network, &targets, &last);
        assert_eq!(readings.len(), 4);
        assert_eq!(readings[0].check, "target tcp://127.0.0.1:1");
        let partition = readings.last().unwrap();
        let sample = partition.sample.as_ref().unwrap();
        assert_eq!(sample.value, 2.0);
        assert!(
            sample
                .evidence
                .contains("failing: tcp://127.0.0.1:1 (refused)"),
            "{}",
            sample.evidence
        );
        assert_eq!(partition.fire, ">= 2 failing for 10s");
        assert_eq!(partition.clear, "<= 1 failing for 10s");
        assert_eq!(readings[0].fire, "failing for 10s");
    }
}
