//! The one way drd speaks HTTP out: one client setup (user agent, rustls), errors
//! with their causes and without the URL (a receiver's URL may hold credentials), and
//! healthchecks.io-style pings for jobs and for drd itself. The health probes, the
//! alert receivers and the pings all go through here.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::config::alerts::redact_url;
use crate::workers::Supervisor;

/// A client for drd's outbound requests, each with its own timeout.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("drd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| format!("cannot set up the HTTP client: {}", chain(&err)))
}

/// A reqwest error with its causes (its own message is often only "error sending
/// request") and without the URL, which the caller shows redacted if at all.
pub fn describe(err: reqwest::Error) -> String {
    let timeout = err.is_timeout();
    let text = chain(&err.without_url());
    if timeout {
        format!("timed out ({text})")
    } else {
        text
    }
}

/// An error with its causes.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a ping says, healthchecks.io's way: `URL/start`, `URL`, `URL/fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A run began.
    Start,
    /// A run succeeded, or drd is alive.
    Success,
    /// A run failed.
    Fail,
}

/// Sends pings in tasks of their own, so a slow or dead endpoint never holds up the
/// run it reports on. Cheap to clone; the client is built at the first ping.
#[derive(Clone, Default)]
pub struct Pinger {
    http: Arc<OnceLock<Result<reqwest::Client, String>>>,
}

/// How long one ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The pings of one run, to its `ping_url` (when it has one), each sent once the one
/// before it was answered or gave up: healthchecks.io reads a `/start` that arrives
/// after the run's success as a run that began and never ended, and marks the check
/// down after its grace time.
pub struct RunPings {
    pinger: Pinger,
    workers: Supervisor,
    url: Option<String>,
    /// Closes when the previous ping is done.
    previous: Mutex<Option<oneshot::Receiver<()>>>,
}

impl RunPings {
    /// Pings with `signal`, the body (a run's summary or error) as the request body,
    /// on a task of the workers, after the run's previous ping. A failure is logged
    /// with the URL redacted.
    pub fn ping(&self, signal: Signal, body: String) {
        let Some(url) = &self.url else { return };
        let target = ping_url(url, signal);
        let (done, next) = oneshot::channel::<()>();
        let previous = self
            .previous
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(next);
        let pinger = self.pinger.clone();
        self.workers.spawn_task(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            if let Err(cause) = pinger.send(&target, body).await {
                tracing::warn!(url = %redact_url(&target), %cause, "ping failed");
            }
            drop(done);
        });
    }
}

impl Pinger {
    /// The pings of one run to `url`, sent in order on tasks of `workers`.
    pub fn run(&self, workers: &Supervisor, url: Option<&str>) -> RunPings {
        RunPings {
            pinger: self.clone(),
            workers: workers.clone(),
            url: url.map(str::to_owned),
            previous: Mutex::new(None),
        }
    }

    /// The daemon's one outbound client (pings, alert receivers), built at first use.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        self.http.get_or_init(client).clone()
    }

    /// Pings `url` now and says how it went.
    pub async fn send(&self, url: &str, body: String) -> Result<(), String> {
        let client = self.client()?;
        let response = client
            .post(url)
            .timeout(PING_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(describe)?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("HTTP {}", status.as_u16())),
        }
    }
}

/// `url` with the signal's suffix: `/start`, nothing, `/fail`. A query string stays
/// at the end.
pub fn ping_url(url: &str, signal: Signal) -> String {
    let suffix = match signal {
        Signal::Start => "start",
        Signal::Success => return url.to_owned(),
        Signal::Fail => "fail",
    };
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = format!("{}/{suffix}", base.trim_end_matches('/'));
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_follow_healthchecks_paths() {
        let url = "https://hc.example.net/ping/abc";
        assert_eq!(
            ping_url(url, Signal::Start),
            "https://hc.example.net/ping/abc/start"
        );
        assert_eq!(ping_url(url, Signal::Success), url);
        assert_eq!(
            ping_url("http://127.0.0.1:8000/p/?rid=1", Signal::Fail),
            "http://127.0.0.1:8000/p/fail?rid=1"
        );
    }
}
