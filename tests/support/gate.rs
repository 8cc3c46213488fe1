//! A fifo the test controls, read by a job's `command` source (`cat FIFO`): the backup
//! stops in the middle, holding its tier's lock, until the test lets it go. No sleeps:
//! the test learns that the backup reached the source when the fifo gets its reader.
//! The fake services of tests/support/services.rs read one in their stop the same way.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// How long [`Gate::wait_reader`] waits: only a hang takes this long.
const READER_DEADLINE: Duration = Duration::from_secs(60);

/// The TOML of a job `JOB` on tier `local` whose one source is `cat {dir}/FIFO`, for
/// [`crate::backup_daemon`].
pub fn slow_job(job: &str, fifo: &str) -> String {
    format!(
        "[jobs.{job}]\ntiers = [\"local\"]\nsources = [{}]\n",
        gate_source("dump", fifo)
    )
}

/// The TOML of a `command` source `NAME` that reads `{dir}/FIFO` (`{dir}` as in
/// [`crate::backup_daemon`]): it ends when the test releases the gate.
pub fn gate_source(name: &str, fifo: &str) -> String {
    format!("{{ kind = \"command\", name = \"{name}\", run = [\"cat\", \"{{dir}}/{fifo}\"] }}")
}

/// A fifo that a `command` source reads.
pub struct Gate {
    path: PathBuf,
}

/// The gate held shut while a backup reads from it; [`Held::release`] opens it.
pub struct Held(File);

impl Gate {
    /// Makes the fifo at `path`.
    pub fn new(path: &Path) -> Gate {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        Gate {
            path: path.to_owned(),
        }
    }

    /// Waits for the command to open the fifo, which it does once the backup holds
    /// its lock and has started its sources; keeps it shut.
    pub fn wait_reader(&self) -> Held {
        self.wait_reader_for("the backup did not reach its source")
    }

    /// Waits for a reader to open the fifo and keeps it shut; `never` says what it
    /// means when none comes before the (generous) deadline.
    pub fn wait_reader_for(&self, never: &str) -> Held {
        let deadline = Instant::now() + READER_DEADLINE;
        loop {
            // Opening for writing without blocking fails (ENXIO) until there is a reader.
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&self.path)
            {
                Ok(file) => return Held(file),
                Err(err) if err.raw_os_error() == Some(nix::libc::ENXIO) => {}
                Err(err) => panic!("open {}: {err}", self.path.display()),
            }
            assert!(
                Instant::now() < deadline,
                "nothing read {} within {READER_DEADLINE:?}: {never}",
                self.path.display()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Held {
    /// Writes `data` (less than a pipe's buffer) and closes: the command ends.
    pub fn release(mut self, data: &[u8]) {
        self.0.write_all(data).unwrap();
    }
}

/// Waits up to `timeout` for `child` (spawned with piped output) and collects it.
pub fn finish(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {timeout:?}: {}", crate::text(&out));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    child.wait_with_output().unwrap()
}
