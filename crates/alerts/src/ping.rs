//! drd's own outbound ping: every `[daemon] ping_every` it pings `[daemon] ping_url`
//! (a healthchecks.io-style check), so an outside deadman notices when the host or drd
//! goes silent: the one failure drd cannot report itself.

use std::sync::Arc;

use async_trait::async_trait;
use drd_core::config::alerts::redact_url;
use drd_core::workers::Worker;
use drd_core::Core;

/// Pings `[daemon] ping_url`; idles when there is none.
pub struct DaemonPing {
    core: Arc<Core>,
}

impl DaemonPing {
    /// The worker for the daemon on `core`.
    pub fn new(core: Arc<Core>) -> DaemonPing {
        DaemonPing { core }
    }
}

#[async_trait]
impl Worker for DaemonPing {
    fn name(&self) -> &'static str {
        "ping"
    }

    async fn step(&mut self) -> Result<String, String> {
        let config = self.core.config();
        let Some(url) = config.config.daemon.ping_url.as_deref() else {
            return Ok("no [daemon] ping_url".to_owned());
        };
        let body = format!("drd {} alive", env!("CARGO_PKG_VERSION"));
        match self.core.pinger.send(url, body).await {
            Ok(()) => Ok(format!("pinged {}", redact_url(url))),
            Err(cause) => {
                tracing::warn!(url = %redact_url(url), %cause, "ping failed");
                Err(format!("ping {}: {cause}", redact_url(url)))
            }
        }
    }

    async fn wait(&mut self) {
        let every = self.core.config().config.daemon.ping_every;
        tokio::time::sleep(every).await;
    }
}
