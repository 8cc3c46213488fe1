//! A fifo the test controls, read by a job's `command` source (`cat FIFO`): the backup
//! stops in the middle, holding its tier's lock, until the test lets it go. No sleeps:
//! the test learns that the backup reached the source when the fifo gets its reader.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// The TOML of a job `JOB` on tier `local` whose one source is `cat {dir}/FIFO`, for
/// [`crate::backup_daemon`].
pub fn slow_job(job: &str, fifo: &str) -> String {
    format!(
        "[jobs.{job}]\ntiers = [\"local\"]\nsources = [{{ kind = \"command\", name = \"dump\", run = [\"cat\", \"{{dir}}/{fifo}\"] }}]\n"
    )
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

    /// Waits up to 20 s for the command to open the fifo, which it does once the
    /// backup holds its lock and has started its sources; keeps it shut.
    pub fn wait_reader(&self) -> Held {
        let deadline = Instant::now() + Duration::from_secs(20);
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
                "nothing read {} within 20 s: the backup did not reach its source",
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
