//! The emergency shutdown machine: whether a shutdown or recovery runs now (or waits,
//! interrupted), and how the newest finished one of each kind ended, read with
//! `drd_shutdown::status` and `drd_shutdown::history` as `drctl status` and
//! `drctl shutdowns` do.

use async_trait::async_trait;
use drd_proto::{RunKind, RunState, RunSummary, ShutdownStatus};
use drd_watch::Watch;
use prometheus_client::registry::Registry;

use crate::{gauges, seconds, set, set_state, Result, Source};

/// How many past runs are read to find the newest finished one of each kind.
const HISTORY: u32 = 50;

/// The shutdown area.
pub struct ShutdownState;

#[async_trait]
impl Source for ShutdownState {
    fn name(&self) -> &'static str {
        "shutdown"
    }

    async fn collect(&self, watch: &Watch, registry: &mut Registry) -> Result<()> {
        // Read before the history: see `drd_shutdown::history::mark_interrupted`.
        let now = drd_shutdown::status(&watch.shutdowns).await;
        let mut runs = drd_shutdown::history::history(&watch.core.catalog, HISTORY).await?;
        drd_shutdown::history::mark_interrupted(&mut runs, now.as_ref());
        fill(registry, now.as_ref(), &runs);
        Ok(())
    }
}

/// The state-set's value for the run `now`: `idle` without one.
fn state_of(now: Option<&ShutdownStatus>) -> &'static str {
    now.map_or("idle", |s| s.state.as_str())
}

fn fill(registry: &mut Registry, now: Option<&ShutdownStatus>, runs: &[RunSummary]) {
    let state = gauges(
        registry,
        "drd_shutdown_state",
        "1 for where the shutdown machine stands (idle; running: a shutdown or recovery \
         runs in this drd; interrupted: one waits for drctl shutdown --resume or drctl \
         abort), 0 for the others",
    );
    let states = [
        "idle",
        RunState::Running.as_str(),
        RunState::Interrupted.as_str(),
    ];
    set_state(&state, &[], &states, state_of(now));

    let outcome = gauges(
        registry,
        "drd_shutdown_last_outcome",
        "Always 1; the outcome label says how the newest finished run of the kind \
         (shutdown or recovery) ended",
    );
    let ended = gauges(
        registry,
        "drd_shutdown_last_end_timestamp_seconds",
        "When the newest finished run of the kind (shutdown or recovery) ended, in Unix \
         seconds",
    );
    let rto = gauges(
        registry,
        "drd_recovery_last_rto_seconds",
        "The measured RTO of the newest recovery that has one: from its shutdown's \
         start until every service was back, healthy and undrained",
    );
    for kind in RunKind::ALL {
        // Newest first; a run still going is not finished.
        let finished = runs
            .iter()
            .filter(|r| r.kind == *kind && r.state != RunState::Running.as_str())
            .find(|r| r.ended_unix_ms.is_some() || r.state == RunState::Interrupted.as_str());
        let Some(run) = finished else { continue };
        let kind = kind.as_str();
        set(
            &outcome,
            &[("kind", kind), ("outcome", run.state.as_str())],
            1.0,
        );
        if let Some(at) = run.ended_unix_ms {
            set(&ended, &[("kind", kind)], seconds(at));
        }
    }
    let newest_rto = runs
        .iter()
        .find(|r| r.kind == RunKind::Recovery && r.rto_ms.is_some())
        .and_then(|r| r.rto_ms);
    if let Some(ms) = newest_rto {
        set(&rto, &[], seconds(i64::try_from(ms).unwrap_or(i64::MAX)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drd_proto::ShutdownTrigger;

    fn run(id: i64, kind: RunKind, state: &str, ended: Option<i64>) -> RunSummary {
        RunSummary {
            run_id: id,
            kind,
            trigger: ShutdownTrigger::Manual,
            actor: "uid 0".to_owned(),
            started_unix_ms: id * 1_000,
            ended_unix_ms: ended,
            state: state.to_owned(),
            recovers: None,
            rto_ms: (kind == RunKind::Recovery && ended.is_some()).then_some(42_000),
        }
    }

    #[test]
    fn idle_with_the_newest_finished_outcome_of_each_kind() {
        // Newest first, as the history reads.
        let runs = [
            run(4, RunKind::Shutdown, "running", None),
            run(3, RunKind::Recovery, "recovered", Some(3_500)),
            run(2, RunKind::Shutdown, "completed", Some(2_500)),
            run(1, RunKind::Shutdown, "aborted", Some(1_500)),
        ];
        let mut registry = Registry::default();
        fill(&mut registry, None, &runs);
        let text = crate::encode(&registry).unwrap();
        for line in [
            "drd_shutdown_state{state=\"idle\"} 1",
            "drd_shutdown_state{state=\"running\"} 0",
            "drd_shutdown_last_outcome{kind=\"shutdown\",outcome=\"completed\"} 1",
            "drd_shutdown_last_outcome{kind=\"recovery\",outcome=\"recovered\"} 1",
            "drd_shutdown_last_end_timestamp_seconds{kind=\"shutdown\"} 2.5",
            "drd_recovery_last_rto_seconds 42",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("aborted"), "{text}");
    }
}
