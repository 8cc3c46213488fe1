//! Blocking work on several threads, with progress reported while they run.
//!
//! Restore and verify hand out items from a shared counter to a few threads. The
//! caller's thread reports progress every [`REPORT_EVERY`] and returns as soon as the
//! last worker does, not at the next tick: a restore of a few hundred MiB takes half a
//! second, and waiting out a 100 ms sleep was a fifth of it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// How often progress is reported while the threads run.
pub(crate) const REPORT_EVERY: Duration = Duration::from_millis(100);

/// Runs `work` on `threads` threads (at least one) and calls `report` every
/// [`REPORT_EVERY`] and once more after the last thread returned.
pub(crate) fn run_reporting(threads: usize, work: &(dyn Fn() + Sync), report: &mut dyn FnMut()) {
    // Each thread holds a sender; the receiver hears "disconnected" when the last one
    // is dropped, whether its thread returned or panicked.
    let (alive, all_returned) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            let alive = alive.clone();
            s.spawn(move || {
                let _alive = alive;
                work();
            });
        }
        drop(alive);
        while let Err(RecvTimeoutError::Timeout) = all_returned.recv_timeout(REPORT_EVERY) {
            report();
        }
        report();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    #[test]
    fn every_thread_runs_and_the_call_returns_when_the_last_one_does() {
        let ran = AtomicUsize::new(0);
        let mut reports = 0;
        let started = Instant::now();
        run_reporting(
            3,
            &|| {
                ran.fetch_add(1, Ordering::Relaxed);
            },
            &mut || reports += 1,
        );
        assert_eq!(ran.load(Ordering::Relaxed), 3);
        assert!(reports >= 1, "the final report is always made");
        // Not a timing test of the machine: three empty threads end long before a tick.
        assert!(started.elapsed() < REPORT_EVERY, "{:?}", started.elapsed());
    }
}
