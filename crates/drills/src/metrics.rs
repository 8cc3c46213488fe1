//! The drills' Prometheus area: per category, whether the newest drill passed, when
//! drills last ran and passed, and the RTO and RPO they last measured against the
//! targets. A failed drill sets `drd_drill_last_success` to 0 until one passes.

use std::sync::Arc;

use async_trait::async_trait;
use drd_metrics::{gauges, set, Error, Source};
use drd_proto::{Category, DrillOutcome};
use drd_watch::Watch;
use prometheus_client::registry::Registry;

use crate::{store, Drills};

/// The drills area, added to the daemon's metrics at start.
pub struct DrillMetrics(pub Arc<Drills>);

#[async_trait]
impl Source for DrillMetrics {
    fn name(&self) -> &'static str {
        "drills"
    }

    async fn collect(&self, _watch: &Watch, registry: &mut Registry) -> drd_metrics::Result<()> {
        let latest = store::latest_per_category(&self.0.core.catalog)
            .await
            .map_err(Error::Catalog)?;
        let passes = store::last_passes(&self.0.core.catalog)
            .await
            .map_err(Error::Catalog)?;
        let config = self.0.core.config();
        let secs = |ms: u64| ms as f64 / 1000.0;

        let success = gauges(
            registry,
            "drd_drill_last_success",
            "Whether the newest recovery drill of each category passed (1) or failed (0)",
        );
        let last_run = gauges(
            registry,
            "drd_drill_last_run_timestamp_seconds",
            "When a drill of each category last ended (cancelled ones not counted)",
        );
        let last_pass = gauges(
            registry,
            "drd_drill_last_pass_timestamp_seconds",
            "When a drill of each category last passed",
        );
        let rto = gauges(
            registry,
            "drd_drill_rto_seconds",
            "The recovery time the newest drill of each category measured",
        );
        let rpo = gauges(
            registry,
            "drd_drill_rpo_seconds",
            "The data-loss window the newest drill of each category measured",
        );
        let target_rto = gauges(
            registry,
            "drd_drill_target_rto_seconds",
            "Each category's RTO target ([drills.targets.CATEGORY] rto)",
        );
        let target_rpo = gauges(
            registry,
            "drd_drill_target_rpo_seconds",
            "Each category's RPO target ([drills.targets.CATEGORY] rpo)",
        );
        for &category in Category::ALL {
            let labels = [("category", category.as_str())];
            let target = config.config.drills.target(category);
            set(&target_rto, &labels, target.rto.as_secs_f64());
            set(&target_rpo, &labels, target.rpo.as_secs_f64());
            if let Some(newest) = latest.iter().find(|l| l.category == category) {
                set(
                    &success,
                    &labels,
                    f64::from(u8::from(newest.outcome == DrillOutcome::Pass)),
                );
                set(&last_run, &labels, newest.finished_ms as f64 / 1000.0);
                if let Some(ms) = newest.rto_ms {
                    set(&rto, &labels, secs(ms));
                }
                if let Some(ms) = newest.rpo_ms {
                    set(&rpo, &labels, secs(ms));
                }
            }
            if let Some((_, at)) = passes.iter().find(|(c, _)| *c == category) {
                set(&last_pass, &labels, *at as f64 / 1000.0);
            }
        }
        Ok(())
    }
}
