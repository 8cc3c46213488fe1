//! The watching half: each monitor check's state, each deadman switch's state and
//! newest ping, and each service health breaker's state, as `drctl monitors` and
//! `drctl deadman` read them.
//!
//! A state is one series per possible state, 1 for the current one and 0 for the
//! rest (see [`crate::set_state`]), so a rule or a graph needs no numeric code.

use async_trait::async_trait;
use drd_proto::{BreakerState, CheckState, MonitorCheck, SwitchInfo, SwitchState};
use drd_watch::Watch;
use prometheus_client::registry::Registry;

use crate::{gauges, seconds, set, set_state, Result, Source};

/// The watching area.
pub struct Watching;

#[async_trait]
impl Source for Watching {
    fn name(&self) -> &'static str {
        "watch"
    }

    async fn collect(&self, watch: &Watch, registry: &mut Registry) -> Result<()> {
        let checks = watch.monitor_checks();
        let switches = watch.switches().await;
        fill(registry, &checks, &switches);
        Ok(())
    }
}

/// The service a service health monitor's check (`service NAME`) is about, if it is one.
fn service_of(check: &MonitorCheck) -> Option<&str> {
    (check.monitor == "services")
        .then(|| check.check.strip_prefix("service "))
        .flatten()
}

/// Registers the families and fills them from `checks` and `switches`.
fn fill(registry: &mut Registry, checks: &[MonitorCheck], switches: &[SwitchInfo]) {
    let check_states: Vec<&str> = CheckState::ALL.iter().map(|s| s.as_str()).collect();
    let switch_states: Vec<&str> = SwitchState::ALL.iter().map(|s| s.as_str()).collect();
    let breaker_states: Vec<&str> = BreakerState::ALL.iter().map(|s| s.as_str()).collect();

    let check_state = gauges(
        registry,
        "drd_monitor_check_state",
        "1 for the monitor check's current state (ok, pending, firing, clearing), 0 for \
         the others",
    );
    let check_since = gauges(
        registry,
        "drd_monitor_check_state_since_timestamp_seconds",
        "Since when the monitor check has been in its current state, in Unix seconds",
    );
    let breaker = gauges(
        registry,
        "drd_breaker_state",
        "1 for the service health circuit breaker's current state (closed, open, \
         half-open), 0 for the others",
    );
    for check in checks {
        let l = [
            ("monitor", check.monitor.as_str()),
            ("check", check.check.as_str()),
        ];
        set_state(&check_state, &l, &check_states, check.state.as_str());
        if let Some(since) = check.since_unix_ms {
            set(&check_since, &l, seconds(since));
        }
        if let (Some(service), Some(state)) = (service_of(check), check.breaker) {
            set_state(
                &breaker,
                &[("service", service)],
                &breaker_states,
                state.as_str(),
            );
        }
    }

    let switch_state = gauges(
        registry,
        "drd_deadman_state",
        "1 for the deadman switch's current state (new, up, late, down, paused), 0 for \
         the others",
    );
    let last_ping = gauges(
        registry,
        "drd_deadman_last_ping_timestamp_seconds",
        "When the deadman switch's newest ping came, of any kind, in Unix seconds",
    );
    let down_at = gauges(
        registry,
        "drd_deadman_down_at_timestamp_seconds",
        "When the deadman switch goes down if no ping comes, in Unix seconds (absent \
         while new or paused)",
    );
    for switch in switches {
        let l = [("switch", switch.name.as_str())];
        set_state(&switch_state, &l, &switch_states, switch.state.as_str());
        if let Some((at, _)) = switch.last_ping {
            set(&last_ping, &l, seconds(at));
        }
        if let Some(at) = switch.down_at_unix_ms {
            set(&down_at, &l, seconds(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drd_proto::PingKind;

    #[test]
    fn checks_switches_and_breakers_are_state_sets() {
        let check = MonitorCheck {
            monitor: "services".to_owned(),
            check: "service api".to_owned(),
            state: CheckState::Firing,
            value: String::new(),
            fire: String::new(),
            clear: String::new(),
            since_unix_ms: Some(2_000),
            evidence: String::new(),
            breaker: Some(BreakerState::HalfOpen),
            error: None,
            actions: Vec::new(),
        };
        let switch = SwitchInfo {
            name: "nightly".to_owned(),
            state: SwitchState::Down,
            last_ping: Some((5_000, PingKind::Success)),
            last_exit_code: None,
            next_deadline_unix_ms: None,
            down_at_unix_ms: None,
            running: None,
            expects: String::new(),
            since_unix_ms: None,
            actions: Vec::new(),
        };
        let mut registry = Registry::default();
        fill(&mut registry, &[check], &[switch]);
        let text = crate::encode(&registry).unwrap();
        for line in [
            "drd_monitor_check_state{monitor=\"services\",check=\"service api\",state=\"firing\"} 1",
            "drd_monitor_check_state{monitor=\"services\",check=\"service api\",state=\"ok\"} 0",
            "drd_monitor_check_state_since_timestamp_seconds{monitor=\"services\",check=\"service api\"} 2",
            "drd_breaker_state{service=\"api\",state=\"half-open\"} 1",
            "drd_breaker_state{service=\"api\",state=\"closed\"} 0",
            "drd_deadman_state{switch=\"nightly\",state=\"down\"} 1",
            "drd_deadman_state{switch=\"nightly\",state=\"up\"} 0",
            "drd_deadman_last_ping_timestamp_seconds{switch=\"nightly\"} 5",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
