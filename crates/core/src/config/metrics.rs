//! `[metrics]`: Prometheus metrics, served on `/metrics` and/or written for
//! node_exporter's textfile collector.
//!
//! The HTTP listener is loopback-only unless the config says otherwise on purpose:
//! the metrics name jobs, tiers, services and switches, which is a map of the host's
//! recovery setup that nobody off the host needs to read by default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::humantime_serde_compat;
use super::{Config, Problem};

/// How often the textfile is written when the config names no `interval`.
pub const DEFAULT_TEXTFILE_INTERVAL: Duration = Duration::from_secs(15);

/// The `[metrics]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics` is served (`"127.0.0.1:9477"`); unset, no server runs. Read at
    /// start only.
    #[serde(deserialize_with = "socket_address")]
    pub listen: Option<SocketAddr>,
    /// Lets `listen` be an address other than loopback.
    pub allow_non_loopback: bool,
    /// A file written atomically every `interval` for node_exporter's textfile
    /// collector (its name must end in `.prom`). Relative paths are taken from the
    /// config file's folder.
    pub textfile: Option<PathBuf>,
    /// How often the textfile is written.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            allow_non_loopback: false,
            textfile: None,
            interval: DEFAULT_TEXTFILE_INTERVAL,
        }
    }
}

impl MetricsConfig {
    /// Makes a relative `textfile` absolute against `base` (the config file's folder).
    pub(super) fn resolve(&mut self, base: &Path) {
        if let Some(file) = &mut self.textfile {
            *file = base.join(&*file);
        }
    }
}

/// `"127.0.0.1:9477"` or `"[::1]:9477"`, with an error that shows how to write one.
fn socket_address<'de, D: Deserializer<'de>>(de: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(de)?;
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP address and port; write it like \"127.0.0.1:9477\" \
             (or \"[::1]:9477\")"
        ))
    })
}

/// What is wrong with `[metrics]`: a non-loopback address nobody opted into, an
/// interval too short to be meant, a textfile node_exporter would not read.
pub(super) fn problems(config: &Config, text: &str) -> Vec<Problem> {
    let metrics = &config.metrics;
    let mut found = Vec::new();
    let mut problem = |field: &str, message: String| {
        found.push(Problem::at(text, field.to_owned(), message));
    };
    if let Some(listen) = metrics.listen {
        if !listen.ip().is_loopback() && !metrics.allow_non_loopback {
            problem(
                "metrics.listen",
                format!(
                    "{listen} is not a loopback address, and the metrics describe this host's \
                     jobs, tiers and services to anyone who can reach it; listen on \
                     127.0.0.1:{port}, or set allow_non_loopback = true in [metrics] to serve \
                     them there on purpose",
                    port = listen.port()
                ),
            );
        }
    }
    if metrics.interval < Duration::from_secs(1) {
        problem(
            "metrics.interval",
            format!(
                "{} is too short to rewrite the textfile; use at least \"1s\" (the default \
                 is \"15s\")",
                humantime::format_duration(metrics.interval)
            ),
        );
    }
    if let Some(file) = &metrics.textfile {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.ends_with(".prom") || name == ".prom" {
            problem(
                "metrics.textfile",
                format!(
                    "{} does not end in .prom, and node_exporter's textfile collector reads \
                     only *.prom files; name it like \
                     /var/lib/prometheus/node-exporter/drd.prom",
                    file.display()
                ),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::{problems_in, Config};
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn defaults_serve_nothing_and_write_nothing() {
        let loaded = Config::load_str(Path::new("/etc/drd/drd.toml"), "").unwrap();
        let metrics = &loaded.config.metrics;
        assert_eq!(metrics.listen, None);
        assert_eq!(metrics.textfile, None);
        assert!(!metrics.allow_non_loopback);
        assert_eq!(metrics.interval, Duration::from_secs(15));
    }

    #[test]
    fn loopback_listens_and_a_relative_textfile_is_taken_from_the_config_folder() {
        let loaded = Config::load_str(
            Path::new("/etc/drd/drd.toml"),
            "[metrics]\nlisten = \"127.0.0.1:9477\"\ntextfile = \"prom/drd.prom\"\n\
             interval = \"1m\"\n",
        )
        .unwrap();
        let metrics = &loaded.config.metrics;
        assert_eq!(metrics.listen, Some("127.0.0.1:9477".parse().unwrap()));
        assert_eq!(
            metrics.textfile.as_deref(),
            Some(Path::new("/etc/drd/prom/drd.prom"))
        );
        assert_eq!(metrics.interval, Duration::from_secs(60));
        assert!(problems_in("[metrics]\nlisten = \"[::1]:9477\"\n").is_empty());
    }

    #[test]
    fn a_non_loopback_listen_needs_the_opt_in_and_the_error_names_it() {
        let text = "[metrics]\nlisten = \"0.0.0.0:9477\"\n";
        let problems = problems_in(text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("metrics.listen: 0.0.0.0:9477 is not a loopback"));
        assert!(
            problems[0].contains("allow_non_loopback = true"),
            "{problems:?}"
        );
        let err = Config::load_str(Path::new("/etc/drd/drd.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("drd.toml:2"), "{err}");
        assert!(problems_in(&format!("{text}allow_non_loopback = true\n")).is_empty());
    }

    #[test]
    fn bad_values_are_refused_with_how_to_write_them() {
        let problems = problems_in("[metrics]\nlisten = \"localhost\"\n");
        assert!(problems[0].contains("\"127.0.0.1:9477\""), "{problems:?}");
        let problems = problems_in("[metrics]\ninterval = \"100ms\"\n");
        assert!(problems[0].starts_with("metrics.interval:"), "{problems:?}");
        let problems = problems_in("[metrics]\ntextfile = \"/var/lib/drd.txt\"\n");
        assert!(problems[0].starts_with("metrics.textfile:"), "{problems:?}");
        assert!(problems[0].contains("*.prom"), "{problems:?}");
        let problems = problems_in("[metrics]\nlisen = \"127.0.0.1:1\"\n");
        assert!(problems[0].contains("lisen"), "{problems:?}");
    }
}
