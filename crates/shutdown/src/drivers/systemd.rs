//! The systemd driver: `systemctl show`, `stop` and `start`.
//!
//! systemctl rather than D-Bus keeps drd free of a D-Bus dependency, and `systemctl
//! stop` already applies the unit's own KillSignal=, TimeoutStopSec= and final
//! SIGKILL. drd only bounds how long it waits for systemctl: the configured
//! `stop_timeout`, or the unit's TimeoutStopUSec, plus a margin.

use std::time::Duration;

use super::{Assessment, DriverError, Result, Stopped};
use drd_core::command::Command;
use drd_core::config::ServiceConfig;

/// Extra time given to systemctl beyond the unit's own stop timeout.
const MARGIN: Duration = Duration::from_secs(10);
/// How long `systemctl show` may take.
const SHOW_TIMEOUT: Duration = Duration::from_secs(10);

/// A systemd unit.
pub struct Systemd {
    unit: String,
    configured_timeout: Option<Duration>,
}

impl Systemd {
    pub(super) fn new(config: &ServiceConfig) -> Systemd {
        Systemd {
            unit: config.unit.clone().unwrap_or_default(),
            configured_timeout: config.stop_timeout,
        }
    }

    fn error(&self, op: &'static str, message: String) -> DriverError {
        DriverError {
            op,
            target: format!("unit {}", self.unit),
            message,
        }
    }

    async fn systemctl(
        &self,
        op: &'static str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String> {
        let mut argv = vec!["systemctl".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv.push(self.unit.clone());
        let finished = Command::new(&argv, timeout)
            .run()
            .await
            .map_err(|err| self.error(op, err.to_string()))?;
        if !finished.success() {
            return Err(self.error(op, format!("systemctl {} {finished}", args.join(" "))));
        }
        Ok(String::from_utf8_lossy(&finished.stdout).into_owned())
    }

    async fn show(&self) -> Result<Show> {
        let text = self
            .systemctl(
                "assess",
                &[
                    "show",
                    "--property=ActiveState,MainPID,Restart,TimeoutStopUSec,LoadState",
                ],
                SHOW_TIMEOUT,
            )
            .await?;
        Ok(Show::parse(&text))
    }

    pub(super) async fn assess(&self) -> Result<Assessment> {
        let show = self.show().await?;
        if show.load_state == "not-found" {
            return Err(self.error("assess", "no such unit".to_owned()));
        }
        Ok(Assessment {
            running: show.running(),
            pid: show.main_pid.filter(|p| *p > 0),
            start_ticks: None,
            healthy: None,
            restart_policy: show.restart.clone(),
            detail: format!("{} ({})", show.active_state, show.load_state),
        })
    }

    pub(super) async fn stop(&self, timeout: Duration) -> Result<Stopped> {
        let show = self.show().await?;
        if !show.running() {
            return Ok(Stopped::WasNotRunning);
        }
        let wait = self
            .configured_timeout
            .or(show.timeout_stop)
            .unwrap_or(timeout)
            + MARGIN;
        self.systemctl("stop", &["stop"], wait).await?;
        Ok(Stopped::Clean)
    }

    pub(super) async fn start(&self, timeout: Duration) -> Result<()> {
        self.systemctl("start", &["start"], timeout + MARGIN)
            .await
            .map(drop)
    }
}

/// The properties drd reads from `systemctl show`.
#[derive(Debug, Default, PartialEq)]
struct Show {
    active_state: String,
    load_state: String,
    main_pid: Option<i32>,
    restart: Option<String>,
    timeout_stop: Option<Duration>,
}

impl Show {
    fn parse(text: &str) -> Show {
        let mut show = Show::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "ActiveState" => value.clone_into(&mut show.active_state),
                "LoadState" => value.clone_into(&mut show.load_state),
                "MainPID" => show.main_pid = value.parse().ok(),
                "Restart" => show.restart = Some(value.to_owned()),
                // "1min 30s", or "infinity".
                "TimeoutStopUSec" => show.timeout_stop = humantime::parse_duration(value).ok(),
                _ => {}
            }
        }
        show
    }

    fn running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading" | "deactivating"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_systemctl_show() {
        let show = Show::parse(
            "ActiveState=active\nMainPID=812\nRestart=on-failure\nTimeoutStopUSec=1min 30s\nLoadState=loaded\n",
        );
        assert!(show.running());
        assert_eq!(show.main_pid, Some(812));
        assert_eq!(show.restart.as_deref(), Some("on-failure"));
        assert_eq!(show.timeout_stop, Some(Duration::from_secs(90)));
        assert!(!Show::parse("ActiveState=inactive\n").running());
    }

    #[tokio::test]
    async fn a_failing_systemctl_is_an_error_naming_the_unit() {
        // No systemd runs as PID 1 here (or systemctl is missing): either way the
        // driver must answer with an error for this unit, not hang or panic.
        let driver = Systemd {
            unit: "drd-test-no-such.service".to_owned(),
            configured_timeout: None,
        };
        let err = driver.assess().await.unwrap_err();
        assert!(
            err.to_string().contains("drd-test-no-such.service"),
            "{err}"
        );
    }
}
