//! The scheduler under tokio's paused time: the clock is "now" at the start plus the
//! paused runtime's elapsed time, and runs take (paused) time by sleeping.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use drd_core::workers::Supervisor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;

/// Unix ms of a UTC time.
fn t(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

/// Wall time that moves with tokio's (paused) clock.
struct PausedClock {
    base_ms: i64,
    start: tokio::time::Instant,
}

impl Clock for PausedClock {
    fn now_ms(&self) -> i64 {
        self.base_ms + i64::try_from(self.start.elapsed().as_millis()).unwrap()
    }
}

/// Jobs with fixed history; each run takes `run_for` and is recorded.
struct Host {
    clock: Arc<PausedClock>,
    jobs: Mutex<Vec<ScheduledJob>>,
    last_starts: HashMap<String, i64>,
    run_for: Duration,
    runs: Mutex<Vec<(String, Trigger, i64)>>,
    running: Mutex<u32>,
    most_at_once: Mutex<u32>,
}

#[async_trait]
impl JobHost for Host {
    fn jobs(&self) -> Vec<ScheduledJob> {
        self.jobs.lock().unwrap().clone()
    }
    async fn last_starts(&self) -> Result<HashMap<String, i64>, String> {
        Ok(self.last_starts.clone())
    }
    async fn run(&self, job: &str, trigger: Trigger) -> Result<String, String> {
        {
            let mut running = self.running.lock().unwrap();
            *running += 1;
            let mut most = self.most_at_once.lock().unwrap();
            *most = (*most).max(*running);
        }
        self.runs
            .lock()
            .unwrap()
            .push((job.to_owned(), trigger, self.clock.now_ms()));
        tokio::time::sleep(self.run_for).await;
        *self.running.lock().unwrap() -= 1;
        Ok(format!("{job} done"))
    }
}

fn job(name: &str, schedule: &str, priority: i32) -> ScheduledJob {
    ScheduledJob {
        name: name.to_owned(),
        schedule: Schedule::parse(schedule).unwrap(),
        jitter: Some(Duration::ZERO),
        priority,
    }
}

/// Starts a scheduler at `now` over `jobs`, with `last_starts` and runs taking
/// `run_for`.
fn start(
    now: &str,
    jobs: Vec<ScheduledJob>,
    last_starts: &[(&str, &str)],
    run_for: Duration,
) -> (Arc<Host>, Supervisor, CancellationToken) {
    let clock = Arc::new(PausedClock {
        base_ms: t(now),
        start: tokio::time::Instant::now(),
    });
    let host = Arc::new(Host {
        clock: clock.clone(),
        jobs: Mutex::new(jobs),
        last_starts: last_starts
            .iter()
            .map(|(job, at)| ((*job).to_owned(), t(at)))
            .collect(),
        run_for,
        runs: Mutex::default(),
        running: Mutex::default(),
        most_at_once: Mutex::default(),
    });
    let token = CancellationToken::new();
    let supervisor = Supervisor::new(token.clone(), TaskTracker::new());
    supervisor.spawn(Scheduler::new(host.clone(), clock, Utc));
    (host, supervisor, token)
}

fn runs(host: &Host) -> Vec<(String, Trigger, i64)> {
    host.runs.lock().unwrap().clone()
}

fn run(job: &str, trigger: Trigger, at: &str) -> (String, Trigger, i64) {
    (job.to_owned(), trigger, t(at))
}

#[tokio::test(start_paused = true)]
async fn catches_up_once_after_downtime_then_keeps_the_schedule() {
    // drd was down from 13:10 to 16:50: three hourly slots of `db` were missed; `logs`
    // (daily) last ran at 16:00 today, so it missed nothing; `new` never ran.
    let (host, _supervisor, token) = start(
        "2026-11-25T16:50:00Z",
        vec![
            job("db", "hourly", 10),
            job("logs", "daily", 20),
            job("new", "hourly", 30),
        ],
        &[
            ("db", "2026-11-25T13:10:00Z"),
            ("logs", "2026-11-25T16:00:00Z"),
        ],
        Duration::from_secs(60),
    );
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    token.cancel();
    assert_eq!(
        runs(&host),
        vec![
            run("db", Trigger::CatchUp, "2026-11-25T16:50:00Z"),
            run("db", Trigger::Schedule, "2026-11-25T17:00:00Z"),
            run("new", Trigger::Schedule, "2026-11-25T17:01:00Z"),
            run("db", Trigger::Schedule, "2026-11-25T18:00:00Z"),
            run("new", Trigger::Schedule, "2026-11-25T18:01:00Z"),
        ],
        "one catch-up for three missed slots; `new` waits its turn behind `db` (priority)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_longer_than_its_period_skips_slots_instead_of_overlapping() {
    let (host, _supervisor, token) = start(
        "2026-11-25T16:50:00Z",
        vec![job("slow", "hourly", 10)],
        &[],
        Duration::from_secs(90 * 60),
    );
    tokio::time::sleep(Duration::from_secs(5 * 3600)).await;
    token.cancel();
    assert_eq!(
        runs(&host),
        vec![
            // 17:00 to 18:30; the 18:00 slot passed during it, so next is 19:00.
            run("slow", Trigger::Schedule, "2026-11-25T17:00:00Z"),
            run("slow", Trigger::Schedule, "2026-11-25T19:00:00Z"),
            run("slow", Trigger::Schedule, "2026-11-25T21:00:00Z"),
        ]
    );
    assert_eq!(*host.most_at_once.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn jitter_and_reloads_are_followed() {
    let mut jittered = job("db", "hourly", 10);
    jittered.jitter = None;
    let expected_jitter = jitter_ms("db", None, 3_600_000);
    let (host, supervisor, token) = start(
        "2026-11-25T16:50:00Z",
        vec![jittered],
        &[],
        Duration::from_secs(1),
    );
    tokio::time::sleep(Duration::from_secs(15 * 60)).await;
    assert_eq!(
        runs(&host),
        vec![(
            "db".to_owned(),
            Trigger::Schedule,
            t("2026-11-25T17:00:00Z") + expected_jitter
        )],
        "the default jitter is the one `drctl jobs` predicts"
    );
    let status = supervisor.statuses().remove(0);
    assert_eq!(status.name, "scheduler");
    assert!(
        status.detail.contains("next: db at 2026-11-25T18:0"),
        "{status:?}"
    );

    // A reload replaces `db` with `files` (every 15 minutes): within a minute the plan
    // follows, and `db` does not run again.
    *host.jobs.lock().unwrap() = vec![job("files", "*/15 * * * *", 10)];
    tokio::time::sleep(Duration::from_secs(3600)).await;
    token.cancel();
    let after: Vec<String> = runs(&host).into_iter().skip(1).map(|r| r.0).collect();
    assert_eq!(after, vec!["files"; 4], "{:?}", runs(&host));
}
