//! The resource monitor: per mount, used space and free inodes; memory available,
//! swap used, load per core, memory and IO pressure, and open files system-wide. One
//! worker samples everything `[monitors.resources]` names each `interval` and hands
//! the readings to [`Watch::observe`], which decides.

pub mod sample;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drd_core::config::monitors::{ResourceKind, ResourcesConfig};
use drd_core::workers::Worker;
use drd_proto::text::bytes;
use sysinfo::System;

use crate::checks::{thresholds_in_words, Reading, Sample};
use crate::Watch;

/// The resource monitor's worker.
pub struct ResourceMonitor {
    watch: Arc<Watch>,
    system: Option<System>,
    interval: Duration,
}

impl ResourceMonitor {
    /// A monitor of the host `watch` runs on.
    pub fn new(watch: Arc<Watch>) -> ResourceMonitor {
        ResourceMonitor {
            watch,
            system: Some(System::new()),
            interval: Duration::from_secs(30),
        }
    }
}

#[async_trait]
impl Worker for ResourceMonitor {
    fn name(&self) -> &'static str {
        "monitor resources"
    }

    async fn step(&mut self) -> Result<String, String> {
        let config = self.watch.core.config();
        let resources = config.config.monitors.resources.clone();
        self.interval = resources.interval;
        let checks = resources.checks().len();
        if checks == 0 {
            // Forgets the checks a reload took out.
            self.watch.observe("resources", Vec::new()).await;
            return Ok("nothing configured in [monitors.resources]".to_owned());
        }
        // statvfs and /proc reads are quick but blocking: off the runtime.
        let mut system = self.system.take().unwrap_or_default();
        let (readings, system) = tokio::task::spawn_blocking(move || {
            let readings = read_all(&resources, &mut system);
            (readings, system)
        })
        .await
        .map_err(|err| format!("sampling failed: {err}"))?;
        self.system = Some(system);
        let failed = readings.iter().filter(|r| r.sample.is_err()).count();
        self.watch.observe("resources", readings).await;
        Ok(if failed == 0 {
            format!("sampled {checks} checks")
        } else {
            format!("sampled {checks} checks, {failed} could not be read")
        })
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.interval).await;
    }
}

/// One reading per configured check.
fn read_all(resources: &ResourcesConfig, system: &mut System) -> Vec<Reading> {
    let mut memory = None;
    resources
        .checks()
        .into_iter()
        .filter_map(|(kind, _field, check)| {
            // A loaded config's rules are valid; a bad one never gets here.
            let rule = check.rule(kind.direction()).ok()?;
            let sample = read_one(kind, check.mount.as_deref(), system, &mut memory);
            let unit = if kind.percent() { "%" } else { "" };
            let (fire, clear) = thresholds_in_words(&rule, unit);
            Some(Reading {
                check: match &check.mount {
                    Some(mount) => format!("{} {}", kind.key(), mount.display()),
                    None => kind.key().to_owned(),
                },
                rule,
                actions: resources.actions(check).to_vec(),
                sample,
                fire,
                clear,
                breaker: None,
            })
        })
        .collect()
}

fn read_one(
    kind: ResourceKind,
    mount: Option<&std::path::Path>,
    system: &mut System,
    memory: &mut Option<sample::MemoryUsage>,
) -> Result<Sample, String> {
    let percent = |value: f64, what: &str, evidence: String| Sample {
        value,
        shown: format!("{value:.1}% {what}"),
        evidence,
    };
    match kind {
        ResourceKind::Disk | ResourceKind::Inodes => {
            let mount = mount.ok_or("no mount")?;
            let usage = sample::mount_usage(mount)?;
            if kind == ResourceKind::Disk {
                Ok(percent(
                    usage.used_percent,
                    "used",
                    format!(
                        "{}: {:.1}% used, {} free of {}",
                        mount.display(),
                        usage.used_percent,
                        bytes(usage.available_bytes),
                        bytes(usage.size_bytes)
                    ),
                ))
            } else {
                let free = usage
                    .free_inodes_percent
                    .ok_or_else(|| format!("{} does not count inodes", mount.display()))?;
                Ok(percent(
                    free,
                    "inodes free",
                    format!(
                        "{}: {:.1}% of inodes free ({} left)",
                        mount.display(),
                        free,
                        usage.free_inodes
                    ),
                ))
            }
        }
        ResourceKind::MemoryAvailable | ResourceKind::Swap => {
            let usage = *memory.get_or_insert_with(|| sample::memory(system));
            if kind == ResourceKind::MemoryAvailable {
                Ok(percent(
                    usage.available_percent,
                    "available",
                    format!(
                        "memory: {} available of {} ({:.1}%)",
                        bytes(usage.available_bytes),
                        bytes(usage.total_bytes),
                        usage.available_percent
                    ),
                ))
            } else {
                let used = usage.swap_used_percent.unwrap_or(0.0);
                Ok(percent(
                    used,
                    "used",
                    match usage.swap_used_percent {
                        Some(_) => {
                            format!("swap: {} used ({used:.1}%)", bytes(usage.swap_used_bytes))
                        }
                        None => "swap: none configured".to_owned(),
                    },
                ))
            }
        }
        ResourceKind::Load => {
            let (one, cpus) = sample::load();
            let per_core = one / cpus.max(1) as f64;
            Ok(Sample {
                value: per_core,
                shown: format!("{per_core:.2} per core"),
                evidence: format!(
                    "load: {one:.2} over 1 minute on {cpus} CPUs ({per_core:.2} per core)"
                ),
            })
        }
        ResourceKind::MemoryPressure | ResourceKind::IoPressure => {
            let resource = if kind == ResourceKind::MemoryPressure {
                "memory"
            } else {
                "io"
            };
            let avg10 = sample::pressure(resource)?;
            Ok(percent(
                avg10,
                "stalled",
                format!("{resource} pressure: some task stalled {avg10:.1}% of the last 10s"),
            ))
        }
        ResourceKind::OpenFiles => {
            let (open, max) = sample::open_files()?;
            let used = open as f64 * 100.0 / max as f64;
            Ok(Sample {
                value: used,
                shown: format!("{used:.1}% of the limit"),
                evidence: format!("open files: {open} of fs.file-max {max}"),
            })
        }
    }
}
