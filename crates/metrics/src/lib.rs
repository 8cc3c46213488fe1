//! drd-metrics: what drd knows, in the Prometheus text format, served on a loopback
//! `/metrics` and written for node_exporter's textfile collector.
//!
//! Nothing is counted on the side: every scrape (and every textfile cycle) builds a
//! fresh registry from the daemon's state and catalog, through the same library
//! functions `drctl jobs`, `drctl monitors`, `drctl deadman` and `drctl shutdowns`
//! use, so the metrics never disagree with what drctl shows. The one exception is the
//! count of control requests, which only the control server sees as they pass.
//!
//! Each area is a [`Source`] in its own file; adding metrics is one more `Source`
//! handed to [`Metrics::add`] (from this crate or from a crate above it). docs/metrics.md
//! lists every family.
//!
//! | concern | module |
//! | --- | --- |
//! | [`Metrics`], the [`Source`] trait, gauge helpers, encoding | `lib.rs` |
//! | build info and start time | [`info`] |
//! | per job: last success, duration, bytes, files, RPO and target | [`jobs`] |
//! | per tier: size, snapshots, replication lag, rolling verify coverage | [`tiers`] |
//! | monitor checks, deadman switches, circuit breakers | [`watch`] |
//! | the shutdown running now and how the last ones ended | [`shutdown`] |
//! | open alerts, the outbox, delivery attempts | [`alerts`] |
//! | control requests by kind and result (the one counter) | [`control`] |
//! | the loopback HTTP route | [`server`] |
//! | the textfile worker, written atomically | [`textfile`] |

pub mod alerts;
pub mod control;
pub mod info;
pub mod jobs;
pub mod server;
pub mod shutdown;
pub mod textfile;
pub mod tiers;
pub mod watch;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use drd_core::catalog::CatalogError;
use drd_watch::Watch;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why metrics could not be gathered, served or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// An area could not gather its figures.
    #[error("cannot gather {area} metrics: {message}")]
    Collect {
        /// The area ([`Source::name`]).
        area: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The registry could not be encoded (a bug: the families are built here).
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}; check that drd may write there")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The `/metrics` listener could not be bound.
    #[error(
        "cannot listen for /metrics on {addr}: {source}; free the port or change \
         [metrics] listen"
    )]
    Bind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Label pairs of one series, in order.
pub type Labels = Vec<(String, String)>;

/// A gauge family of float values.
pub type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// The content type of [`Metrics::encode`]'s output: the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One area of metrics: gathers its figures and adds its families to a fresh
/// registry, once per scrape or textfile cycle.
#[async_trait]
pub trait Source: Send + Sync {
    /// A short name (`jobs`, `tiers`): the `collector` label of
    /// `drd_scrape_collector_success`, and in logs.
    fn name(&self) -> &'static str;

    /// Adds this area's families, with their values as they stand, to `registry`.
    async fn collect(&self, watch: &Watch, registry: &mut Registry) -> Result<()>;
}

/// The daemon's metrics: its state, the areas that read it, and the control request
/// counter. Cheap to share behind an `Arc`.
pub struct Metrics {
    watch: Arc<Watch>,
    sources: Mutex<Vec<Arc<dyn Source>>>,
    /// Control requests by kind and result, counted by the control server.
    pub control: Arc<control::ControlRequests>,
}

impl Metrics {
    /// The metrics of the daemon whose state is `watch`, with every built-in area.
    pub fn new(watch: Arc<Watch>) -> Metrics {
        let control = Arc::new(control::ControlRequests::default());
        let sources: Vec<Arc<dyn Source>> = vec![
            Arc::new(info::BuildInfo),
            Arc::new(jobs::Jobs),
            Arc::new(tiers::Tiers::default()),
            Arc::new(watch::Watching),
            Arc::new(shutdown::ShutdownState),
            Arc::new(alerts::Alerting),
            control.clone(),
        ];
        Metrics {
            watch,
            sources: Mutex::new(sources),
            control,
        }
    }

    /// The daemon state the areas read.
    pub fn watch(&self) -> &Arc<Watch> {
        &self.watch
    }

    /// Adds an area (alerts, drills): from the next scrape on, its families are in
    /// every exposition.
    pub fn add(&self, source: Arc<dyn Source>) {
        self.sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(source);
    }

    /// Every area's families as they stand now. An area that fails is logged and left
    /// out, and `drd_scrape_collector_success` says which, so one unreadable table
    /// does not blank the rest.
    pub async fn registry(&self) -> Registry {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut registry = Registry::default();
        let success = gauges(
            &mut registry,
            "drd_scrape_collector_success",
            "Whether each area of drd's metrics could be gathered on this scrape (1) or not (0)",
        );
        for source in sources {
            let ok = match source.collect(&self.watch, &mut registry).await {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!(area = source.name(), cause = %err, "cannot gather metrics");
                    false
                }
            };
            set(
                &success,
                &[("collector", source.name())],
                f64::from(u8::from(ok)),
            );
        }
        registry
    }

    /// Every area's families in the Prometheus text format.
    pub async fn encode(&self) -> Result<String> {
        encode(&self.registry().await)
    }
}

/// `registry` in the Prometheus text format (version 0.0.4).
pub fn encode(registry: &Registry) -> Result<String> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// Registers a gauge family `name` (a full name: `drd_` prefix and unit suffix
/// included) with `help`, and returns it to fill.
pub fn gauges(registry: &mut Registry, name: &str, help: &str) -> Gauges {
    let family = Gauges::default();
    registry.register(name, help, family.clone());
    family
}

/// Sets the series of `family` with `labels` to `value`.
pub fn set(family: &Gauges, labels: &[(&str, &str)], value: f64) {
    let labels: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    family.get_or_create(&labels).set(value);
}

/// One series per state of `all`, 1 for `current` and 0 for the others, each with
/// `labels` and `state="NAME"`: the usual Prometheus encoding of an enum, so a rule
/// reads `drd_deadman_state{state="down"} == 1`.
pub fn set_state(family: &Gauges, labels: &[(&str, &str)], all: &[&str], current: &str) {
    for state in all {
        let mut with_state = labels.to_vec();
        with_state.push(("state", state));
        set(family, &with_state, f64::from(u8::from(*state == current)));
    }
}

/// Unix milliseconds as Prometheus's seconds.
pub fn seconds(ms: i64) -> f64 {
    // Precision to the millisecond stays within f64's 53 bits for any real date.
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_encode_as_one_series_each_with_the_current_one_at_1() {
        let mut registry = Registry::default();
        let family = gauges(&mut registry, "drd_thing_state", "Where each thing stands");
        set_state(&family, &[("thing", "a")], &["ok", "firing"], "firing");
        let text = encode(&registry).unwrap();
        assert!(
            text.contains("# HELP drd_thing_state Where each thing stands"),
            "{text}"
        );
        assert!(text.contains("# TYPE drd_thing_state gauge"), "{text}");
        assert!(
            text.contains("drd_thing_state{thing=\"a\",state=\"ok\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("drd_thing_state{thing=\"a\",state=\"firing\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF"),
            "the Prometheus format, not OpenMetrics"
        );
    }

    /// The state of a daemon on `config` (TOML) with its catalog in `dir`, nothing
    /// started.
    pub(crate) fn daemon(dir: &std::path::Path, config: &str) -> Arc<Watch> {
        let core = Arc::new(drd_core::Core::for_test(dir, config));
        let backups = Arc::new(drd_backup::Backups::new(core.clone()));
        let shutdowns = Arc::new(drd_shutdown::Shutdowns::new(core.clone(), backups.clone()));
        let clock = Arc::new(drd_core::clock::SystemClock);
        let alerts = Arc::new(drd_alerts::Alerts::new(core.clone(), clock.clone()));
        Arc::new(Watch::new(core, backups, shutdowns, alerts, clock))
    }

    #[tokio::test]
    async fn an_idle_daemon_exposes_its_build_and_every_area_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new(daemon(dir.path(), ""));
        let text = metrics.encode().await.unwrap();
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            text.contains(&format!("drd_build_info{{version=\"{version}\"}} 1")),
            "{text}"
        );
        assert!(
            text.contains("drd_shutdown_state{state=\"idle\"} 1"),
            "{text}"
        );
        for area in [
            "info", "jobs", "tiers", "watch", "shutdown", "alerts", "control",
        ] {
            let line = format!("drd_scrape_collector_success{{collector=\"{area}\"}} 1");
            assert!(text.contains(&line), "no {line:?} in\n{text}");
        }
        // Every family has its help and type.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "no HELP for {name}"
            );
            assert!(name.starts_with("drd_"), "{name}");
        }
    }

    #[test]
    fn milliseconds_become_seconds() {
        assert!((seconds(1_500) - 1.5).abs() < f64::EPSILON);
        assert!((seconds(1_700_000_000_123) - 1_700_000_000.123).abs() < 1e-3);
    }
}
