//! The `memory` worker: once a second it reads the daemon's resident memory, and when
//! that has grown by more than [`GROWTH`] over the lowest it has been, and has grown
//! since the last give-back, and the daemon was idle over the last second, it gives
//! the allocator's free memory back. So a finished backup, restore, verify or drill
//! leaves the daemon at its idle size within a second or two, whichever part of drd
//! ran it (see drd-memory for why the allocator keeps it otherwise).
//!
//! Not while work runs: the memory would be faulted in again at once, and a page
//! faulted in is a page zeroed by the kernel (a tenth of a first backup's CPU time was
//! `clear_page` when buffers were not reused). A backup can still look idle for a
//! second while it waits for its packs to reach the disk; what a give-back then leaves
//! is the work's live memory, so it must not become the level to grow from (it did:
//! the daemon then kept 52 MiB after a first backup of the `mixed` bench corpus, where
//! it keeps 23 MiB when no give-back came in between).

use std::time::Duration;

/// Growth of the resident memory that is worth a give-back.
pub const GROWTH: u64 = 8 << 20;

/// How often the worker looks.
pub const EVERY: Duration = Duration::from_secs(1);

/// The daemon counts as idle when it used less CPU than this over the last [`EVERY`].
pub const IDLE_CPU: Duration = Duration::from_millis(100);

/// See the module docs.
#[derive(Default)]
pub struct MemoryKeeper {
    /// What the last give-back did, kept for the status line.
    last: Option<String>,
    /// The process's CPU time at the last step.
    cpu: Option<Duration>,
    /// When a give-back is worth it.
    marks: Marks,
}

impl MemoryKeeper {
    /// A keeper that has given nothing back yet.
    pub fn new() -> MemoryKeeper {
        MemoryKeeper::default()
    }
}

/// The resident sizes a give-back is decided on.
#[derive(Default)]
struct Marks {
    /// The lowest resident size seen: what the daemon needs when nothing runs.
    low: Option<u64>,
    /// The resident size after the last give-back, which a next one must exceed (by
    /// more than [`REGROWTH`]) so that an idle daemon whose live memory did grow is
    /// not trimmed again every second for nothing.
    after_last: Option<u64>,
    /// Whether the daemon was busy since the last give-back. Work that went on after
    /// a give-back in one of its pauses may end below what that give-back left (its
    /// largest buffers are unmapped at once, the rest stays free in the arena): it is
    /// given back once more, whatever the size.
    busy_since_last: bool,
}

/// Growth since the last give-back that is worth another.
const REGROWTH: u64 = 2 << 20;

impl Marks {
    /// Whether to give back now, at `resident` bytes, idle or not.
    fn due(&mut self, idle: bool, resident: u64) -> bool {
        let low = self.low.map_or(resident, |low| low.min(resident));
        self.low = Some(low);
        self.busy_since_last |= !idle;
        let new_since_last =
            self.busy_since_last || self.after_last.is_none_or(|a| resident > a + REGROWTH);
        idle && resident > low + GROWTH && new_since_last
    }

    /// Notes what a give-back left.
    fn gave_back(&mut self, after: u64) {
        self.busy_since_last = false;
        self.after_last = Some(after);
        self.low = Some(self.low.map_or(after, |low| low.min(after)));
    }
}

#[async_trait::async_trait]
impl crate::workers::Worker for MemoryKeeper {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn step(&mut self) -> Result<String, String> {
        let cpu = drd_memory::cpu_time();
        let idle = match (self.cpu, cpu) {
            (Some(before), Some(now)) => now.saturating_sub(before) < IDLE_CPU,
            _ => false,
        };
        self.cpu = cpu;
        let Some(resident) = drd_memory::resident() else {
            return Err("cannot read /proc/self/statm".to_owned());
        };
        if self.marks.due(idle, resident) {
            // malloc_trim walks the arena under its lock: off the async threads.
            let _ = tokio::task::spawn_blocking(drd_memory::give_back).await;
            let after = drd_memory::resident().unwrap_or(resident);
            tracing::debug!(resident, after, "gave freed memory back");
            self.last = Some(format!(
                "gave back {} MiB (resident {} -> {} MiB)",
                resident.saturating_sub(after) >> 20,
                resident >> 20,
                after >> 20,
            ));
            self.marks.gave_back(after);
        }
        Ok(self
            .last
            .clone()
            .unwrap_or_else(|| "nothing to give back yet".to_owned()))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_give_back_in_a_pause_of_the_work_does_not_raise_the_idle_level() {
        let mut marks = Marks::default();
        assert!(
            !marks.due(true, 20 * MIB),
            "the first look only notes the level"
        );
        assert!(!marks.due(false, 60 * MIB), "never while busy");
        // The backup waits for the disk: idle for a second, its buffers still live.
        assert!(marks.due(true, 60 * MIB));
        marks.gave_back(45 * MIB);
        assert!(!marks.due(false, 52 * MIB));
        // Finished at 52 MiB: 32 above the idle level, given back although it is
        // less than GROWTH above what the give-back in the pause left.
        assert!(marks.due(true, 52 * MIB));
        marks.gave_back(23 * MIB);
        assert!(!marks.due(true, 23 * MIB));
    }

    #[test]
    fn live_memory_that_stays_is_not_trimmed_every_second() {
        let mut marks = Marks::default();
        marks.due(true, 20 * MIB);
        assert!(marks.due(true, 50 * MIB));
        marks.gave_back(40 * MIB);
        for _ in 0..5 {
            assert!(!marks.due(true, 41 * MIB), "nothing new to give back");
        }
        assert!(
            marks.due(true, 50 * MIB),
            "grown again since the last give-back"
        );
    }

    /// A drill restored 500,000 files: a give-back in one of its pauses left 262 MiB,
    /// the drill went on, and when it ended the daemon sat at 134 MiB, most of it
    /// free, below what that give-back left. It stayed there (bench/run on `small`).
    #[test]
    fn work_that_ends_below_a_give_back_in_its_pause_is_given_back() {
        let mut marks = Marks::default();
        marks.due(true, 22 * MIB);
        assert!(!marks.due(false, 293 * MIB));
        assert!(marks.due(true, 293 * MIB), "a pause of the drill");
        marks.gave_back(262 * MIB);
        assert!(!marks.due(false, 280 * MIB), "the drill goes on");
        assert!(marks.due(true, 134 * MIB), "the drill has ended");
        marks.gave_back(24 * MIB);
        assert!(!marks.due(true, 24 * MIB));
    }
}
