//! Alerts: open alerts by severity and whether someone acknowledged them, deliveries
//! waiting in the outbox per receiver, and delivery attempts per receiver and result
//! since drd started, read with `drd_alerts` as `drctl alerts` does.

use async_trait::async_trait;
use drd_proto::Severity;
use drd_watch::Watch;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::{gauges, set, Error, Labels, Result, Source};

/// The alerts area.
pub struct Alerting;

#[async_trait]
impl Source for Alerting {
    fn name(&self) -> &'static str {
        "alerts"
    }

    async fn collect(&self, watch: &Watch, registry: &mut Registry) -> Result<()> {
        let failed = |err: drd_alerts::Error| Error::Collect {
            area: "alerts",
            message: err.to_string(),
        };
        let open = watch.alerts.list(false).await.map_err(failed)?;
        let stats = watch.alerts.stats().await.map_err(failed)?;
        let config = watch.core.config();

        let by_severity = gauges(
            registry,
            "drd_alerts_open",
            "Open (firing) alerts by severity and whether someone acknowledged them",
        );
        for severity in Severity::ALL {
            for acked in [false, true] {
                let count = open
                    .iter()
                    .filter(|a| a.severity == *severity && a.ack.is_some() == acked)
                    .count();
                #[allow(clippy::cast_precision_loss)]
                let count = count as f64;
                let acked = if acked { "true" } else { "false" };
                set(
                    &by_severity,
                    &[("severity", severity.as_str()), ("acked", acked)],
                    count,
                );
            }
        }

        let waiting = gauges(
            registry,
            "drd_alert_outbox_waiting",
            "Deliveries waiting in the alert outbox for each receiver (a receiver that is \
             down or behind its open breaker holds them)",
        );
        for name in config.config.alerts.receivers.keys() {
            #[allow(clippy::cast_precision_loss)]
            let count = stats.waiting.get(name).copied().unwrap_or(0) as f64;
            set(&waiting, &[("receiver", name)], count);
        }

        // The encoder adds `_total` to a counter's name.
        let attempts = Family::<Labels, Counter>::default();
        registry.register(
            "drd_alert_delivery_attempts",
            "Alert deliveries tried since drd started, by receiver and result (ok, failed)",
            attempts.clone(),
        );
        for ((receiver, result), count) in &stats.attempts {
            let labels = vec![
                ("receiver".to_owned(), receiver.clone()),
                ("result".to_owned(), (*result).to_owned()),
            ];
            attempts.get_or_create(&labels).inc_by(*count);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use drd_alerts::Raise;

    use super::*;
    use crate::Metrics;

    #[tokio::test]
    async fn open_alerts_and_the_outbox_show_per_severity_and_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let watch = crate::tests::daemon(
            dir.path(),
            "[alerts.receivers.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n",
        );
        let raise = Raise {
            severity: Severity::Critical,
            source: "deadman/export".to_owned(),
            summary: "deadman/export down".to_owned(),
            evidence: "overdue".to_owned(),
        };
        watch.alerts.raise(raise).await.unwrap();
        // Nothing listens on the discard port: the firing and the resolution fail.
        let tried = watch.alerts.test("hook").await.unwrap();
        assert!(!tried.ok, "{tried:?}");
        let text = Metrics::new(watch).encode().await.unwrap();
        for line in [
            "drd_alerts_open{severity=\"critical\",acked=\"false\"} 1.0",
            "drd_alerts_open{severity=\"warning\",acked=\"false\"} 0.0",
            "drd_alert_outbox_waiting{receiver=\"hook\"} 0.0",
            "drd_scrape_collector_success{collector=\"alerts\"} 1.0",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        let failed = "drd_alert_delivery_attempts_total{receiver=\"hook\",result=\"failed\"} 2";
        assert!(text.contains(failed), "{text}");
    }
}
