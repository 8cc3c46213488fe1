//! network_partition: does the network monitor's logic see a partition, and how fast?
//!
//! The drill opens loopback TCP listeners, one per configured `[monitors.network]`
//! target (at least one, at most [`MAX_TARGETS`]), and points an in-memory copy of
//! the network check at them: the monitor's own probing and readings
//! ([`drd_watch::network::Probes`]), its quorum, and its hold, fed to a check of the
//! monitor's own kind ([`drd_watch::condition::Check`]). Once every listener answers,
//! they are all closed, and the drill times how long until the check fires. That
//! time is the RTO: the time to detection. Nothing about the host's network is
//! touched, and the real monitor never sees the drill's targets.
//!
//! The partition's `on_fire` actions are then described, not run
//! ([`drd_watch::policy::would_do`]): the evidence says what the policy would do, such
//! as which services a shutdown would stop.

use std::time::{Duration, Instant};

use drd_core::config::network::{NetworkConfig, Quorum, TargetConfig};
use drd_proto::Category;
use drd_watch::condition::{Check, Transition};
use drd_watch::network::Probes;
use tokio::net::TcpListener;

use super::{ms, Drill, Finding};

/// The longest hold the drill waits out. The hold is a number the config states, not
/// something that can break: a one-minute hold would have the drill spend a minute
/// proving that a minute passed. Two seconds still runs the confirmation (a single
/// failed probe must not fire) and keeps a drill short. A shorter configured hold is
/// used as it is.
const HOLD_CAP: Duration = Duration::from_secs(2);

/// How often the drill's targets are probed: loopback answers at once, so a short
/// interval keeps the measured time close to the hold.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// How long one probe of a loopback target may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The most loopback targets the drill opens, whatever the config lists.
const MAX_TARGETS: usize = 8;

/// How long past the RTO target the drill still waits for the partition.
const SLACK: Duration = Duration::from_secs(5);

const SUBJECT: &str = "loopback port";

pub(super) async fn run(drill: &Drill) -> Vec<Finding> {
    let started = Instant::now();
    drill.step("network_partition", SUBJECT.to_owned());
    let failed = |why: String| Finding::failed(Category::Network, SUBJECT.to_owned(), started, why);
    let configured = &drill.config.config.monitors.network;
    let n = configured.targets.len().clamp(1, MAX_TARGETS);
    let mut listeners = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..n {
        let bound = match TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener.local_addr().map(|a| (listener, a)),
            Err(err) => Err(err),
        };
        match bound {
            Ok((listener, address)) => {
                listeners.push(listener);
                addresses.push(address.to_string());
            }
            Err(err) => return vec![failed(format!("cannot listen on 127.0.0.1: {err}"))],
        }
    }
    let (network, how) = drill_network(configured, &addresses);
    let mut probes = Probes::default();
    let mut check = Check::new(network.partition_rule());
    let base = Instant::now();
    let now_ms = || i64::try_from(base.elapsed().as_millis()).unwrap_or(i64::MAX);

    // Reachable first: a check that never saw the targets answer proves nothing.
    let Some(before) = partition_sample(probes.cycle(&network).await) else {
        return vec![failed(
            "the network check gave no partition reading".to_owned(),
        )];
    };
    check.observe(before.0, now_ms());
    if before.0 != 0.0 {
        return vec![failed(format!(
            "the loopback targets did not answer before the partition, so the drill \
             cannot tell a partition from them: {}",
            before.1
        ))];
    }

    drop(listeners);
    let t0 = Instant::now();
    let target = drill.target(Category::Network);
    let deadline = t0 + target.rto + SLACK;
    let last = loop {
        tokio::select! {
            () = drill.token.cancelled() => return Vec::new(),
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
        let Some((value, evidence)) = partition_sample(probes.cycle(&network).await) else {
            return vec![failed(
                "the network check gave no partition reading".to_owned(),
            )];
        };
        if check.observe(value, now_ms()) == Some(Transition::Fired) {
            break evidence;
        }
        if Instant::now() >= deadline {
            return vec![failed(format!(
                "no partition detected within {} of closing the targets ({how}); the \
                 check is {} on its last reading: {evidence}",
                drd_proto::text::measured(ms(t0.elapsed())),
                check.state().as_str(),
            ))];
        }
    };
    let rto = t0.elapsed();
    let would = drd_watch::policy::would_do(&drill.config.config, &configured.on_fire).await;
    let policy = if would.is_empty() {
        "[monitors.network] on_fire is empty: a partition would only be recorded".to_owned()
    } else {
        format!("policy in dry-run: {}", would.join("; "))
    };
    vec![Finding::measured(
        Category::Network,
        SUBJECT.to_owned(),
        started,
        (Some(rto), None),
        target,
        format!(
            "partition detected {} after closing the targets ({how}): {last}; {policy}",
            drd_proto::text::measured(ms(rto)),
        ),
    )]
}

/// The config's network check pointed at `addresses`, probed every [`PROBE_EVERY`],
/// held for at most [`HOLD_CAP`], and how it was set up, in words.
fn drill_network(configured: &NetworkConfig, addresses: &[String]) -> (NetworkConfig, String) {
    let hold = configured.hold.min(HOLD_CAP);
    let mut network = configured.clone();
    network.targets = addresses
        .iter()
        .map(|address| TargetConfig {
            name: Some(format!("drill {address}")),
            url: format!("tcp://{address}"),
            timeout: Some(PROBE_TIMEOUT),
            interval: Some(PROBE_EVERY),
            expect_status: None,
        })
        .collect();
    // The configured quorum counts the configured targets; it fits the drill's only
    // when there are as many.
    if addresses.len() != configured.targets.len() {
        network.quorum = Quorum::Majority;
    }
    network.hold = hold;
    network.clear_hold = None;
    network.interval = PROBE_EVERY;
    network.timeout = PROBE_TIMEOUT;
    network.on_fire = Vec::new();
    network.on_target_fire = Vec::new();
    let hold_words = if hold < configured.hold {
        format!(
            "hold {} (the configured {} capped for the drill)",
            humantime::format_duration(hold),
            humantime::format_duration(configured.hold)
        )
    } else {
        format!("hold {}", humantime::format_duration(hold))
    };
    let how = format!(
        "{} loopback targets, partition at {} failing, {hold_words}",
        addresses.len(),
        network.quorum()
    );
    (network, how)
}

/// The `partition` reading's value and evidence (the monitor puts it last).
fn partition_sample(readings: Vec<drd_watch::checks::Reading>) -> Option<(f64, String)> {
    let partition = readings.into_iter().find(|r| r.check == "partition")?;
    match partition.sample {
        Ok(sample) => Some((sample.value, sample.evidence)),
        Err(why) => Some((f64::NAN, why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(text: &str) -> NetworkConfig {
        drd_core::config::Config::load_str(std::path::Path::new("/x/drd.toml"), text)
            .unwrap()
            .config
            .monitors
            .network
    }

    #[test]
    fn the_hold_is_capped_and_the_quorum_kept_only_when_the_targets_match() {
        let configured = network(
            "[monitors.network]\ntargets = [\"tcp://10.0.0.1:22\", \"tcp://10.0.0.2:22\", \
             \"dns://example.net\"]\nquorum = 3\nhold = \"1m\"\n",
        );
        let three = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"].map(String::from);
        let (drilled, how) = drill_network(&configured, &three);
        assert_eq!(drilled.hold, HOLD_CAP);
        assert_eq!(drilled.quorum(), 3);
        assert_eq!(
            how,
            "3 loopback targets, partition at 3 failing, hold 2s (the configured 1m \
             capped for the drill)"
        );
        let (drilled, _) = drill_network(&configured, &three[..1]);
        assert_eq!(
            drilled.quorum(),
            1,
            "a quorum of 3 cannot hold over 1 target"
        );

        let short = network("[monitors.network]\nhold = \"500ms\"\n");
        let (drilled, how) = drill_network(&short, &three[..1]);
        assert_eq!(drilled.hold, Duration::from_millis(500));
        assert!(how.ends_with("hold 500ms"), "{how}");
        assert!(
            drilled.on_fire.is_empty(),
            "the drill's check acts on nothing"
        );
    }
}
