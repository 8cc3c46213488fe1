//! drd-memory: give the heap memory a finished backup, restore or verify freed back to
//! the system.
//!
//! glibc's malloc keeps freed memory in its arenas (one per thread that allocated, up
//! to eight per core) for reuse, and raises its mmap threshold after the first large
//! buffer is freed, so the chunk and pack buffers of a backup end up in arenas too.
//! Measured with bench/run, the daemon's resident memory grew from phase to phase
//! (132, 159, 187 and 234 MiB after a first backup, a re-run, a restore and a verify)
//! and stayed there while idle. [`one_arena`] keeps all of it in one arena and
//! [`give_back`] returns what is free (`malloc_trim(0)`); [`resident`] and
//! [`cpu_time`] let the daemon's `memory` worker pick its moment.
//!
//! These are the workspace's only calls into C outside of what crates wrap: the
//! workspace forbids `unsafe`, this crate denies it and allows it at the two calls.
//! Elsewhere than glibc both are no-ops.

/// Makes every thread allocate from one arena; call first thing in `main`, before any
/// thread starts.
///
/// `malloc_trim` returns free chunks anywhere in an arena but shrinks only the main
/// arena's top: the other arenas kept up to their (dynamic, up to 64 MiB) trim
/// threshold at the top each, 130 MiB over four arenas after a first backup, all of
/// it free. `give_back` then returns everything. The price is one lock for every
/// thread's allocations: a backup of many small files that allocated a few buffers
/// per blob spent a tenth of its CPU waiting for it, so the backup pipeline moves its
/// blobs in batches of one buffer each (drd-repo's `Blobs`) and reuses its scratch
/// buffers; measure with bench/run on the `small` corpus after changing it.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; with no other thread
        // running yet there is nothing for it to race with.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Returns free heap memory to the system; true when some was returned.
pub fn give_back() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases pages of free chunks and takes the arena
        // locks itself; a pad of 0 keeps nothing spare at the top of the heap.
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// This process's resident memory in bytes, from `/proc/self/statm`.
pub fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// CPU time this process has used (user and system), from `/proc/self/stat`.
pub fn cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // /proc reports in USER_HZ, which the kernel's ABI fixes at 100 per second.
    Some(std::time::Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_buffers_are_held_and_then_given_back() {
        // A large buffer freed first (a pack) raises glibc's mmap threshold; then many
        // mid-sized ones (chunks), freed in a scattered order so the heap cannot just
        // shrink from the top: the case that made the daemon grow.
        drop(std::hint::black_box(vec![1u8; 16 << 20]));
        let mut bufs: Vec<Vec<u8>> = (0..400).map(|i| vec![i as u8; 256 * 1024]).collect();
        let keep: Vec<Vec<u8>> = bufs.drain(..).step_by(2).collect();
        let before = resident().unwrap();
        give_back();
        let after = resident().unwrap();
        assert!(
            after + (32 << 20) <= before,
            "resident {before} -> {after} bytes: nothing given back"
        );
        drop(keep);
    }

    #[test]
    fn cpu_time_counts_work_done() {
        // A fixed amount of work (not a wall-clock time: the machine may be loaded),
        // several hundred ms of CPU on any machine this runs on.
        let before = cpu_time().unwrap();
        let mut x = 0u64;
        for i in 0..400_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let used = cpu_time().unwrap() - before;
        assert!(
            used >= std::time::Duration::from_millis(100),
            "{used:?} for {x}"
        );
    }
}
