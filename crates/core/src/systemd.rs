//! systemd glue: the notify protocol and the watchdog worker.
//!
//! Everything here is a no-op when drd is not started by systemd (no `NOTIFY_SOCKET`),
//! so the same binary runs by hand, in tests and under a unit.

use std::time::Duration;

use async_trait::async_trait;
use sd_notify::NotifyState;

use crate::catalog::Catalog;
use crate::workers::Worker;

/// Sends `states` to systemd if it is listening. Failures are logged, never fatal: a
/// daemon that cannot reach systemd still protects the host.
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(false, states) {
        tracing::warn!(cause = %err, "cannot notify systemd");
    }
}

/// Tells systemd (and `systemctl status`) what the daemon is doing.
pub fn status(line: &str) {
    notify(&[NotifyState::Status(line)]);
}

/// Asks systemd to wait `by` longer for the start or stop in progress
/// (EXTEND_TIMEOUT_USEC), so a long emergency shutdown is not cut short.
pub fn extend_timeout(by: Duration) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    notify(&[NotifyState::ExtendTimeoutUsec(usec)]);
}

/// Pets systemd's watchdog at half its timeout, but only while the catalog answers: a
/// daemon whose catalog thread is wedged should be restarted, not kept alive.
pub struct Watchdog {
    interval: Duration,
    catalog: Catalog,
}

impl Watchdog {
    /// The watchdog worker, if systemd asked for one (`WatchdogSec=` in the unit).
    pub fn from_env(catalog: Catalog) -> Option<Watchdog> {
        watchdog_usec().map(|usec| Watchdog {
            interval: Duration::from_micros(usec / 2),
            catalog,
        })
    }
}

/// `WATCHDOG_USEC`, if it is meant for this process. As in libsystemd's
/// `sd_watchdog_enabled`, a missing `WATCHDOG_PID` means it is (the sd-notify crate
/// insists on one, which would ignore a plain `WATCHDOG_USEC`).
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse() != Ok(std::process::id()) => None,
        _ => (usec > 0).then_some(usec),
    }
}

#[async_trait]
impl Worker for Watchdog {
    fn name(&self) -> &'static str {
        "watchdog"
    }

    async fn step(&mut self) -> Result<String, String> {
        let probe = self.catalog.call("watchdog probe", |c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
        });
        match tokio::time::timeout(self.interval, probe).await {
            Ok(Ok(_)) => {
                notify(&[NotifyState::Watchdog]);
                Ok(format!(
                    "petted; next in {}",
                    humantime::format_duration(self.interval)
                ))
            }
            Ok(Err(err)) => Err(format!("catalog did not answer ({err}); not petting")),
            Err(_) => Err("catalog did not answer in time; not petting".to_owned()),
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.interval).await;
    }
}
