//! The `memory` worker: once a second it reads the daemon's resident memory, and when
//! that has grown by more than [`GROWTH`] since the last time it gave memory back and
//! the daemon was idle over the last second, it gives the allocator's free memory back. So a finished backup, restore, verify or drill
//! leaves the daemon at its idle size within a second or two, whichever part of drd
//! ran it (see drd-memory for why the allocator keeps it otherwise).
//!
//! Not while work runs: the memory would be faulted in again at once, and a page
//! faulted in is a page zeroed by the kernel (a tenth of a first backup's CPU time was
//! `clear_page` when buffers were not reused).

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
    /// Resident bytes after the last give-back (or the lowest seen since).
    floor: Option<u64>,
}

impl MemoryKeeper {
    /// A keeper that has given nothing back yet.
    pub fn new() -> MemoryKeeper {
        MemoryKeeper::default()
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
        let floor = *self.floor.get_or_insert(resident);
        if idle && resident > floor + GROWTH {
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
            self.floor = Some(after);
        } else if resident < floor {
            self.floor = Some(resident);
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
