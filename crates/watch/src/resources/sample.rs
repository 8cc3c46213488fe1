//! Reading the host: memory, swap and load through `sysinfo`; space and inodes of
//! one mount through statvfs (exact for the mount named, whatever its filesystem,
//! where `sysinfo`'s disk list leaves some filesystems out); pressure from
//! `/proc/pressure`, which `sysinfo` does not read; open files from
//! `/proc/sys/fs/file-nr`.

use std::path::Path;

use sysinfo::System;

/// Used space and free inodes of one mount, in %.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MountUsage {
    /// Used space in % of what is usable (as `df` counts it: root's reserve left out).
    pub used_percent: f64,
    /// Bytes free for unprivileged users.
    pub available_bytes: u64,
    /// Bytes in all.
    pub size_bytes: u64,
    /// Free inodes in % of all, when the filesystem counts inodes.
    pub free_inodes_percent: Option<f64>,
    /// Free inodes.
    pub free_inodes: u64,
}

/// statvfs of `mount`.
pub fn mount_usage(mount: &Path) -> Result<MountUsage, String> {
    let stat = nix::sys::statvfs::statvfs(mount)
        .map_err(|err| format!("cannot read {}: {err}", mount.display()))?;
    let frsize = stat.fragment_size().max(1) as u64;
    let blocks = stat.blocks() as u64;
    let free = stat.blocks_free() as u64;
    let avail = stat.blocks_available() as u64;
    let used = blocks.saturating_sub(free);
    let usable = used + avail;
    let used_percent = if usable == 0 {
        0.0
    } else {
        used as f64 * 100.0 / usable as f64
    };
    let files = stat.files() as u64;
    let files_free = stat.files_available() as u64;
    Ok(MountUsage {
        used_percent,
        available_bytes: avail * frsize,
        size_bytes: blocks * frsize,
        free_inodes_percent: (files > 0).then(|| files_free as f64 * 100.0 / files as f64),
        free_inodes: files_free,
    })
}

/// Memory and swap, as `sysinfo` reads them from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryUsage {
    /// Memory available in % of the total.
    pub available_percent: f64,
    /// Bytes available.
    pub available_bytes: u64,
    /// Bytes in all.
    pub total_bytes: u64,
    /// Swap used in % of the total; `None` without swap.
    pub swap_used_percent: Option<f64>,
    /// Swap used, bytes.
    pub swap_used_bytes: u64,
}

/// Memory and swap now; `system` is kept between cycles so each refresh reads only
/// memory.
pub fn memory(system: &mut System) -> MemoryUsage {
    system.refresh_memory();
    let total = system.total_memory();
    let available = system.available_memory();
    let swap_total = system.total_swap();
    let swap_used = system.used_swap();
    MemoryUsage {
        available_percent: if total == 0 {
            100.0
        } else {
            available as f64 * 100.0 / total as f64
        },
        available_bytes: available,
        total_bytes: total,
        swap_used_percent: (swap_total > 0).then(|| swap_used as f64 * 100.0 / swap_total as f64),
        swap_used_bytes: swap_used,
    }
}

/// The 1-minute load average and the number of CPUs it is shared by.
pub fn load() -> (f64, usize) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    (System::load_average().one, cpus)
}

/// `some avg10` of `/proc/pressure/{resource}` (`memory`, `io`), in %.
pub fn pressure(resource: &str) -> Result<f64, String> {
    let path = format!("/proc/pressure/{resource}");
    let text = std::fs::read_to_string(&path).map_err(|err| {
        format!("cannot read {path} ({err}); pressure needs Linux 4.20+ with PSI enabled")
    })?;
    parse_pressure(&text).ok_or_else(|| format!("{path} has no \"some avg10=\" line"))
}

fn parse_pressure(text: &str) -> Option<f64> {
    let some = text.lines().find(|l| l.starts_with("some "))?;
    some.split_whitespace()
        .find_map(|field| field.strip_prefix("avg10="))
        .and_then(|v| v.parse().ok())
}

/// Open files system-wide and the limit (`fs.file-max`).
pub fn open_files() -> Result<(u64, u64), String> {
    let path = "/proc/sys/fs/file-nr";
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read {path}: {err}"))?;
    parse_file_nr(&text).ok_or_else(|| format!("{path} holds {:?}, not three numbers", text.trim()))
}

fn parse_file_nr(text: &str) -> Option<(u64, u64)> {
    let numbers: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match numbers[..] {
        [allocated, _unused, max] if max > 0 => Some((allocated, max)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_and_file_nr_parse_what_the_kernel_writes() {
        let psi = "some avg10=12.50 avg60=3.00 avg300=1.00 total=123\n\
                   full avg10=1.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(parse_pressure(psi), Some(12.5));
        assert_eq!(parse_pressure("full avg10=1.00"), None);
        assert_eq!(
            parse_file_nr("2304\t0\t9223372036854775807\n"),
            Some((2304, 9223372036854775807))
        );
        assert_eq!(parse_file_nr("1 2"), None);
    }

    #[test]
    fn the_real_host_reads() {
        let root = mount_usage(Path::new("/")).unwrap();
        assert!((0.0..=100.0).contains(&root.used_percent), "{root:?}");
        let mut system = System::new();
        let memory = memory(&mut system);
        assert!(
            memory.total_bytes > 0 && memory.available_percent <= 100.0,
            "{memory:?}"
        );
        assert!(open_files().unwrap().0 > 0);
        assert!(mount_usage(Path::new("/no/such/mount"))
            .unwrap_err()
            .contains("/no/such/mount"));
    }
}
