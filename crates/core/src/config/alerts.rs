//! `[alerts]`: where alerts go. Receivers by name (`[alerts.receivers.NAME]`, of kind
//! `alertmanager`, `webhook` or `exec`), routes by severity with an escalation chain
//! (`[alerts.routes.critical]`), and the retry settings of the outbox. The journal
//! gets every alert whatever is configured here.

use std::collections::BTreeMap;
use std::time::Duration;

use drd_proto::Severity;
use serde::Deserialize;

use super::jobs::optional_duration;
use super::{Config, Problem};

/// The `[alerts]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Receivers by name.
    #[serde(default)]
    pub receivers: BTreeMap<String, ReceiverConfig>,
    /// Routes by severity (`critical`, `warning`, `info`) or `default` for the
    /// severities without a route of their own. With no route at all, every alert
    /// goes to every receiver at once.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteConfig>,
    /// The first retry of a failed delivery comes this long after it (default 5s);
    /// each next one waits twice as long, with jitter, up to `retry_max`.
    #[serde(default, with = "optional_duration")]
    pub retry_first: Option<Duration>,
    /// The longest wait between retries (default 5m).
    #[serde(default, with = "optional_duration")]
    pub retry_max: Option<Duration>,
    /// How often a firing alert is posted again to Alertmanager receivers, which
    /// resolve an alert on their own when it is not refreshed (default 1m).
    #[serde(default, with = "optional_duration")]
    pub resend: Option<Duration>,
}

/// What kind of receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// An Alertmanager: `url` is its base, alerts go to `/api/v2/alerts`.
    Alertmanager,
    /// A JSON POST to `url`.
    Webhook,
    /// A command with the alert as JSON on stdin.
    Exec,
}

/// One `[alerts.receivers.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// `alertmanager`, `webhook` or `exec`.
    pub kind: ReceiverKind,
    /// The URL (alertmanager, webhook). Credentials in it are never logged or shown.
    pub url: Option<String>,
    /// The command (exec), as argv.
    #[serde(default)]
    pub command: Vec<String>,
    /// Request headers taken from drd's environment when it sends (webhook,
    /// alertmanager): `{ Authorization = "HOOK_AUTH" }` sends the value of
    /// `$HOOK_AUTH`, so secrets stay out of the config file.
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
    /// How long one delivery may take (default 10s).
    #[serde(default, with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// Failed deliveries in a row that open the receiver's breaker (default 3).
    pub breaker_failures: Option<u32>,
    /// How long the breaker stays open the first time (default 30s); doubled at
    /// each reopening, up to 10 minutes.
    #[serde(default, with = "optional_duration")]
    pub breaker_open_for: Option<Duration>,
}

impl ReceiverConfig {
    /// How long one delivery may take.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(10))
    }
}

/// One `[alerts.routes.SEVERITY]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The levels, in order: each level's receivers get the alert once it has been
    /// open and unacknowledged for the level's `after`.
    pub escalation: Vec<LevelConfig>,
}

/// One level of an escalation chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// How long after the alert was raised (default 0s: at once).
    #[serde(default, with = "optional_duration")]
    pub after: Option<Duration>,
    /// The receivers of this level.
    pub receivers: Vec<String>,
}

/// One level of the chain an alert follows, resolved from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// How long after the alert was raised.
    pub after: Duration,
    /// Its receivers.
    pub receivers: Vec<String>,
}

impl AlertsConfig {
    /// The escalation chain for `severity`: its own route, else `default`, else every
    /// receiver at once.
    pub fn chain(&self, severity: Severity) -> Vec<Level> {
        match self
            .routes
            .get(severity.as_str())
            .or_else(|| self.routes.get("default"))
        {
            Some(route) => route
                .escalation
                .iter()
                .map(|level| Level {
                    after: level.after.unwrap_or_default(),
                    receivers: level.receivers.clone(),
                })
                .collect(),
            None if self.receivers.is_empty() => Vec::new(),
            None => vec![Level {
                after: Duration::ZERO,
                receivers: self.receivers.keys().cloned().collect(),
            }],
        }
    }

    /// The first retry's delay.
    pub fn retry_first(&self) -> Duration {
        self.retry_first.unwrap_or(Duration::from_secs(5))
    }

    /// The longest wait between retries.
    pub fn retry_max(&self) -> Duration {
        self.retry_max.unwrap_or(Duration::from_secs(300))
    }

    /// How often a firing alert is posted again to Alertmanager.
    pub fn resend(&self) -> Duration {
        self.resend.unwrap_or(Duration::from_secs(60))
    }
}

/// Checks receivers and routes, naming each mistake with its field.
pub(super) fn problems(config: &Config, text: &str) -> Vec<Problem> {
    let alerts = &config.alerts;
    let mut found = Vec::new();
    let mut problem = |field: String, message: String| {
        found.push(Problem::at(text, field, message));
    };
    for (name, receiver) in &alerts.receivers {
        let at = format!("alerts.receivers.{name}");
        match receiver.kind {
            ReceiverKind::Alertmanager | ReceiverKind::Webhook => match &receiver.url {
                None => problem(
                    format!("{at}.url"),
                    "this kind needs a url, like url = \"http://127.0.0.1:9093\"".to_owned(),
                ),
                Some(url) => {
                    if let Err(message) = check_url(url) {
                        problem(format!("{at}.url"), message);
                    }
                }
            },
            ReceiverKind::Exec => {
                if receiver.command.is_empty() {
                    problem(
                        format!("{at}.command"),
                        "an exec receiver needs a command, like command = [\"/usr/local/bin/page\", \"--team\", \"ops\"]"
                            .to_owned(),
                    );
                }
            }
        }
        if receiver.kind == ReceiverKind::Exec && !receiver.headers_from_env.is_empty() {
            problem(
                format!("{at}.headers_from_env"),
                "headers are for alertmanager and webhook receivers; an exec receiver reads the environment itself".to_owned(),
            );
        }
        if receiver.breaker_failures == Some(0) {
            problem(
                format!("{at}.breaker_failures"),
                "must be at least 1 (3 is the default)".to_owned(),
            );
        }
        if receiver.timeout.is_some_and(|t| t.is_zero()) {
            problem(
                format!("{at}.timeout"),
                "must be longer than zero".to_owned(),
            );
        }
    }
    for (severity, route) in &alerts.routes {
        let at = format!("alerts.routes.{severity}");
        if !matches!(
            severity.as_str(),
            "critical" | "warning" | "info" | "default"
        ) {
            problem(
                at.clone(),
                format!("{severity:?} is not a severity: routes are named critical, warning, info or default"),
            );
        }
        if route.escalation.is_empty() {
            problem(
                format!("{at}.escalation"),
                "name at least one level, like escalation = [{ receivers = [\"oncall\"] }]"
                    .to_owned(),
            );
        }
        let mut last = Duration::ZERO;
        for level in &route.escalation {
            let after = level.after.unwrap_or_default();
            if after < last {
                problem(
                    format!("{at}.escalation"),
                    "levels go in order of `after`, earliest first".to_owned(),
                );
            }
            last = after;
            if level.receivers.is_empty() {
                problem(
                    format!("{at}.escalation"),
                    "each level names at least one receiver".to_owned(),
                );
            }
            for name in &level.receivers {
                if !alerts.receivers.contains_key(name) {
                    problem(
                        format!("{at}.escalation"),
                        super::unknown("receiver", name, alerts.receivers.keys()),
                    );
                }
            }
        }
    }
    for (field, value) in [
        ("alerts.retry_first", alerts.retry_first),
        ("alerts.retry_max", alerts.retry_max),
        ("alerts.resend", alerts.resend),
    ] {
        if value.is_some_and(|d| d < Duration::from_secs(1)) {
            problem(field.to_owned(), "must be at least \"1s\"".to_owned());
        }
    }
    let pings = config
        .jobs
        .iter()
        .map(|(name, job)| (format!("jobs.{name}.ping_url"), &job.ping_url))
        .chain([("daemon.ping_url".to_owned(), &config.daemon.ping_url)]);
    for (field, url) in pings {
        if let Some(Err(message)) = url.as_deref().map(check_url) {
            problem(field, message);
        }
    }
    if config.daemon.ping_every < Duration::from_secs(1) {
        problem(
            "daemon.ping_every".to_owned(),
            "must be at least \"1s\" (\"1m\" is the default)".to_owned(),
        );
    }
    found
}

/// An http(s) URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| format!("{} is not a URL ({err})", redact_url(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "{} is not an http(s) URL with a host, like \"http://127.0.0.1:9093\"",
            redact_url(url)
        ));
    }
    Ok(())
}

/// `url` safe to log or show: the password in it and the query string are replaced
/// by `***`; a text that is not a URL is shown as `<not a URL>`.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "<not a URL>".to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        parsed.set_query(Some("***"));
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::problems_in;

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(
            redact_url("https://bot:s3cret@hooks.example.net/x?token=abc"),
            "https://bot:***@hooks.example.net/x?***"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9093"),
            "http://127.0.0.1:9093/"
        );
        assert_eq!(redact_url("s3cret"), "<not a URL>");
    }

    #[test]
    fn chains_fall_back_to_default_then_to_every_receiver() {
        let config: AlertsConfig = toml::from_str(
            r#"
            [receivers.a]
            kind = "webhook"
            url = "http://127.0.0.1:1/"
            [receivers.b]
            kind = "exec"
            command = ["true"]
            [routes.critical]
            escalation = [{ receivers = ["a"] }, { after = "5m", receivers = ["b"] }]
            "#,
        )
        .unwrap();
        let chain = config.chain(Severity::Critical);
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].after, Duration::from_secs(300));
        assert_eq!(chain[1].receivers, ["b"]);
        // No route for warning and no default: every receiver at once.
        let chain = config.chain(Severity::Warning);
        assert_eq!(chain.len(), 1);
        assert_eq!(chain[0].receivers, ["a", "b"]);
    }

    #[test]
    fn mistakes_are_named_with_their_field() {
        let problems = problems_in(
            r#"
            [alerts.receivers.am]
            kind = "alertmanager"
            [alerts.receivers.hook]
            kind = "webhook"
            url = "ftp://example.net"
            [alerts.receivers.page]
            kind = "exec"
            [alerts.routes.urgent]
            escalation = [{ after = "5m", receivers = ["am"] }, { receivers = ["pager"] }]
            "#,
        );
        let text = problems.join("\n");
        assert!(
            text.contains("alerts.receivers.am.url: this kind needs a url"),
            "{text}"
        );
        assert!(
            text.contains("alerts.receivers.hook.url: ftp://example.net/ is not an http(s) URL"),
            "{text}"
        );
        assert!(
            text.contains("alerts.receivers.page.command: an exec receiver needs a command"),
            "{text}"
        );
        assert!(text.contains("\"urgent\" is not a severity"), "{text}");
        assert!(text.contains("levels go in order"), "{text}");
        assert!(text.contains("pager"), "{text}");
    }
}
