//! Test helper: builds the real binaries once, starts `drd` on a temporary config and
//! socket, waits until it answers, and runs `drctl` against it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use drd_proto::codec;
use drd_proto::{ClientFrame, Hello, ServerFrame, PROTOCOL_VERSION};

#[path = "support/docker.rs"]
pub mod docker;

#[path = "support/moto.rs"]
pub mod moto;

#[path = "support/alerting.rs"]
pub mod alerting;

#[path = "support/real_parts.rs"]
pub mod real_parts;
pub use real_parts::{python3_with, real_part_missing, real_parts_required};

#[path = "support/files.rs"]
pub mod files;
pub use files::{
    files_under, flip_byte, flip_middle_byte, index_files, packs, rename_damaged_copy_over,
};

/// The job most tests run: `files`, the folder `{dir}/data` onto the `local` tier (for
/// [`backup_daemon`], which fills in `{dir}`).
pub const FILES_JOB: &str =
    "[jobs.files]\ntiers = [\"local\"]\nsources = [{ kind = \"path\", path = \"{dir}/data\" }]\n";

/// [`FILES_JOB`] onto `local` and a directory tier `offsite` at `{dir}/offsite/repo`.
pub const OFFSITE_FILES_JOB: &str =
    "[tiers.offsite]\nkind = \"dir\"\npath = \"{dir}/offsite/repo\"\n\
    [jobs.files]\ntiers = [\"local\", \"offsite\"]\n\
    sources = [{ kind = \"path\", path = \"{dir}/data\" }]\n";

/// Paths to the built `drd` and `drctl`.
pub struct Bins {
    pub drd: PathBuf,
    pub drctl: PathBuf,
}

/// Builds `drd` and `drctl` if they are stale (once per test binary) and returns where
/// they are.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            // The same selection as `.ci/run` and nextest build, so the feature set (the
            // tests turn on tokio's test-util) matches theirs and this is a no-op there:
            // building only the binaries would compile drd and everything on tokio again.
            .args(["build", "--quiet", "--workspace", "--all-targets"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of drd and drctl failed");
        // target/debug/deps/<test> -> target/debug
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap().to_owned();
        Bins {
            drd: dir.join("drd"),
            drctl: dir.join("drctl"),
        }
    })
}

/// A temporary folder that other users can traverse (tests run clients as other uids).
pub fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("drd-test")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A running `drd`, stopped (SIGKILL) when dropped.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub config: PathBuf,
}

impl Daemon {
    /// Writes a config (`[daemon]` paths are filled in, `extra` is appended to the
    /// `[daemon]` table and may add more tables) and starts drd on it.
    pub fn start(extra: &str) -> Daemon {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = open_tempdir();
        let config = dir.path().join("drd.toml");
        std::fs::write(&config, config_text(dir.path(), extra)).unwrap();
        let mut daemon = Daemon {
            dir,
            child: None,
            config,
        };
        daemon.spawn(env);
        daemon.wait_ready();
        daemon
    }

    /// Starts drd on this daemon's config without waiting.
    pub fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.log_path()).unwrap();
        let mut cmd = Command::new(&bins().drd);
        cmd.args(["run", "--log-format", "text", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/drd.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("drd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn catalog(&self) -> PathBuf {
        self.dir.path().join("state/catalog.db")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Waits until drd answers a handshake on its socket.
    pub fn wait_ready(&mut self) {
        let (socket, log) = (self.socket(), self.log_path());
        wait_answering(self.child.as_mut().unwrap(), &socket, &log);
    }

    /// Runs drctl against this daemon.
    pub fn drctl(&self, args: &[&str]) -> Output {
        drctl(&self.socket(), args)
    }

    /// Sends `signal` to drd.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits for drd to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("drd did not exit within {timeout:?}; log:\n{}", self.log());
    }

    /// Kills drd (SIGKILL) and waits until it is gone, as a crash or an OOM kill would
    /// leave things; [`Daemon::spawn`] starts it again.
    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(120));
    }

    /// Stops drd with SIGTERM, checks that it exited 0, and starts it again on the same
    /// config and state with `env`, waiting until it answers.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM);
        self.spawn(env);
        self.wait_ready();
    }

    /// Sends `signal` and checks that drd exits 0 within 20 s.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) {
        self.signal(signal);
        assert_eq!(
            self.wait_exit(Duration::from_secs(20)),
            Some(0),
            "{}",
            self.log()
        );
    }

    /// Polls `cond` until it holds; after `timeout` panics with `what` and drd's log.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        if !polled(timeout, cond) {
            panic!(
                "timed out after {timeout:?} waiting for {what}; log:\n{}",
                self.log()
            );
        }
    }

    /// Rewrites the config file (paths filled in as at start).
    pub fn rewrite_config(&self, extra: &str) {
        std::fs::write(&self.config, config_text(self.dir.path(), extra)).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn config_text(dir: &Path, extra: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"{}\"\nsocket = \"{}\"\n{extra}\n",
        dir.join("state").display(),
        dir.join("run/drd.sock").display()
    )
}

/// Waits up to 20 s until the drd `child` answers a handshake on `socket`; panics with
/// its log (the file `log`) if it exits first or never answers.
pub fn wait_answering(child: &mut Child, socket: &Path, log: &Path) {
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("drd exited early with {status}; log:\n{}", log());
        }
        if let Ok(mut conn) = RawConn::connect(socket) {
            if conn.handshake().is_ok() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("drd did not become ready; log:\n{}", log());
}

/// Runs drctl with `--socket socket`.
pub fn drctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(&bins().drctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("DRD_SOCKET")
        .output()
        .unwrap()
}

/// stdout and stderr of `out`, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A raw connection for speaking (or abusing) the protocol byte by byte.
pub struct RawConn {
    pub stream: UnixStream,
}

impl RawConn {
    pub fn connect(socket: &Path) -> std::io::Result<RawConn> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(RawConn { stream })
    }

    /// Writes one length-prefixed frame.
    pub fn send_frame(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        self.stream.write_all(&len)?;
        self.stream.write_all(payload)
    }

    /// Connects, shakes hands and sends `request`; reads wait up to `timeout`. The test
    /// then reads drd's events and answer frame by frame.
    pub fn request(socket: &Path, request: drd_proto::Request, timeout: Duration) -> RawConn {
        let mut conn = RawConn::connect(socket).unwrap();
        conn.stream.set_read_timeout(Some(timeout)).unwrap();
        conn.handshake().unwrap();
        conn.send_frame(&codec::encode(&ClientFrame::Request(request)).unwrap())
            .unwrap();
        conn
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one frame and decodes it; `None` at end of stream.
    pub fn read_frame(&mut self) -> std::io::Result<Option<ServerFrame>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(err) => return Err(err),
        }
        let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut payload)?;
        Ok(Some(
            codec::decode(&payload).map_err(std::io::Error::other)?,
        ))
    }

    pub fn hello(&mut self, protocol: u32) -> std::io::Result<Option<ServerFrame>> {
        let hello = ClientFrame::Hello(Hello {
            protocol,
            client: "test".to_owned(),
        });
        self.send_frame(&codec::encode(&hello).unwrap())?;
        self.read_frame()
    }

    pub fn handshake(&mut self) -> std::io::Result<()> {
        match self.hello(PROTOCOL_VERSION)? {
            Some(ServerFrame::Welcome(_)) => Ok(()),
            other => Err(std::io::Error::other(format!("no welcome: {other:?}"))),
        }
    }

    /// Reads until the server closes the connection; true if it did within 10 s.
    pub fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// One audit entry: actor, action, outcome, detail.
pub type AuditRow = (String, String, String, String);

/// Audit rows (actor, action, outcome, detail) read straight from the catalog file.
pub fn audit_rows(catalog: &Path) -> Vec<AuditRow> {
    let conn = rusqlite::Connection::open(catalog).unwrap();
    let mut stmt = conn
        .prepare("SELECT actor, action, outcome, detail FROM audit ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Waits up to 10 s for `cond`.
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(10), cond);
}

/// Polls `cond` until it holds; panics naming `what` after `timeout`.
pub fn eventually_within(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    if !polled(timeout, cond) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// The one polling loop of the tests: checks `cond` every 25 ms until it holds (true)
/// or `timeout` has passed (false).
fn polled(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A drd with a key, a `local` directory tier at `DIR/repo`, and the jobs in `jobs`
/// (TOML; `{dir}` in it stands for the daemon's folder).
pub fn backup_daemon(jobs: &str) -> Daemon {
    backup_daemon_with("", jobs)
}

/// [`backup_daemon`] with more `[daemon]` settings (TOML lines).
pub fn backup_daemon_with(daemon_settings: &str, jobs: &str) -> Daemon {
    let dir = open_tempdir();
    let key = dir.path().join("main.key");
    generate_key(&key);
    let extra = format!(
        "{daemon_settings}\n[keys]\nfiles = [\"{}\"]\n[tiers.local]\nkind = \"dir\"\npath = \"{}\"\n{}",
        key.display(),
        dir.path().join("repo").display(),
        jobs.replace("{dir}", &dir.path().display().to_string())
    );
    let config = dir.path().join("drd.toml");
    std::fs::write(&config, config_text(dir.path(), &extra)).unwrap();
    let mut daemon = Daemon {
        dir,
        child: None,
        config,
    };
    daemon.spawn(&[]);
    daemon.wait_ready();
    daemon
}

impl Daemon {
    /// Runs drctl with `--json` and parses its stdout; panics unless it exits 0.
    pub fn drctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.drctl(&all);
        assert!(out.status.success(), "drctl {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Restores with `drctl restore ARGS --target DIR/NAME` and asserts that `data`
    /// came back whole (below the target, at its absolute path).
    pub fn restore_and_compare(&self, args: &[&str], data: &Path, name: &str) {
        let target = self.dir.path().join(name);
        let mut all = vec!["restore"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--target", target.to_str().unwrap()]);
        let out = self.drctl(&all);
        assert!(out.status.success(), "drctl {all:?}: {}", text(&out));
        assert_same_tree(data, &target.join(data.strip_prefix("/").unwrap()));
    }

    /// Runs `drctl backup --job JOB` (panics unless it succeeds) and returns the new
    /// snapshot's id.
    pub fn backup_now(&self, job: &str) -> String {
        let report = self.drctl_json(&["backup", "--job", job]);
        report["snapshot"]["id"].as_str().unwrap().to_owned()
    }

    /// Adds `retention` (a TOML line such as `retention = { keep_last = 1 }`) to job
    /// `job` in the config file and reloads it with `drctl reload`.
    pub fn set_retention(&self, job: &str, retention: &str) {
        let table = format!("[jobs.{job}]\n");
        self.edit_config(&table, &format!("{table}{retention}\n"));
    }

    /// Replaces `from` (which must be there) with `to` in the config file and reloads it
    /// with `drctl reload`, which must succeed.
    pub fn edit_config(&self, from: &str, to: &str) {
        let config = std::fs::read_to_string(&self.config).unwrap();
        assert!(config.contains(from), "no {from:?} in {config}");
        std::fs::write(&self.config, config.replace(from, to)).unwrap();
        let out = self.drctl(&["reload"]);
        assert!(out.status.success(), "{}", text(&out));
    }

    /// The ids of the snapshots `drctl backups --tier TIER` lists, or what drctl said
    /// when it fails (a tier that cannot be read yet).
    pub fn snapshot_ids(&self, tier: &str) -> Result<Vec<String>, String> {
        let out = self.drctl(&["backups", "--tier", tier, "--json"]);
        if !out.status.success() {
            return Err(text(&out));
        }
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect())
    }

    /// The names of the `local` tier's index files that the catalog caches, sorted.
    pub fn cached_index_names(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(self.catalog()).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM index_files WHERE location = ?1 ORDER BY name")
            .unwrap();
        stmt.query_map([self.repo().display().to_string()], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Waits up to 10 s for an audit entry by `actor` of `action` with `outcome`, and
    /// returns it (actor, action, outcome, detail).
    pub fn wait_for_audit(&self, actor: &str, action: &str, outcome: &str) -> AuditRow {
        self.wait_for_audit_where(
            &format!("audit entry {actor:?} {action:?} {outcome:?}"),
            Duration::from_secs(10),
            |r| r.0 == actor && r.1 == action && r.2 == outcome,
        )
    }

    /// Waits up to `timeout` for the first audit entry that `matches`, and returns it;
    /// panics naming `what` if none comes.
    pub fn wait_for_audit_where(
        &self,
        what: &str,
        timeout: Duration,
        mut matches: impl FnMut(&AuditRow) -> bool,
    ) -> AuditRow {
        let mut found = None;
        eventually_within(what, timeout, || {
            found = audit_rows(&self.catalog()).into_iter().find(&mut matches);
            found.is_some()
        });
        found.unwrap()
    }

    /// The repository of the `local` tier.
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The key file.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("main.key")
    }
}

/// Runs `drd ARGS` (offline commands).
pub fn drd(args: &[&OsStr]) -> Output {
    Command::new(&bins().drd).args(args).output().unwrap()
}

/// The arguments of `drctl restore --backup-id SELECTOR --target TARGET` (push more
/// after them).
pub fn restore_args<'a>(selector: &'a str, target: &'a Path) -> Vec<&'a str> {
    let target = target.to_str().unwrap();
    vec!["restore", "--backup-id", selector, "--target", target]
}

/// `s` as an argument for [`drd`].
pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Writes a new key file at `path` with `drd key generate`.
pub fn generate_key(path: &Path) {
    let out = drd(&[os("key"), os("generate"), os("--out"), path.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Runs `drd check-config --config CONFIG`.
pub fn check_config(config: &Path) -> Output {
    drd(&[os("check-config"), os("--config"), config.as_os_str()])
}

/// The repository's root folder (where `examples/` and `docs/` are).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Copies `files` (paths relative to the repository's root) to the same paths below
/// `dir`, making their folders; the copies keep their modes.
pub fn copy_from_workspace(dir: &Path, files: &[&str]) {
    for file in files {
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(workspace_root().join(file), &to).unwrap();
    }
}

impl Daemon {
    /// Runs `drd SUBCOMMAND --repo REPO --key KEY ARGS` on the `local` tier's
    /// repository and this daemon's key, as on a bare machine.
    pub fn offline(&self, subcommand: &[&str], args: &[&OsStr]) -> Output {
        let (repo, key) = (self.repo(), self.key());
        let mut all: Vec<&OsStr> = subcommand.iter().map(|s| os(s)).collect();
        all.extend([os("--repo"), repo.as_os_str(), os("--key"), key.as_os_str()]);
        all.extend_from_slice(args);
        drd(&all)
    }

    /// Runs `drd restore --backup-id SELECTOR --target TARGET` offline (see
    /// [`Daemon::offline`]).
    pub fn offline_restore(&self, selector: &str, target: &Path) -> Output {
        let args = [
            os("--backup-id"),
            os(selector),
            os("--target"),
            target.as_os_str(),
        ];
        self.offline(&["restore"], &args)
    }

    /// Runs drctl against this daemon as user `uid` and group `gid` (the tests run as
    /// root, so they can).
    pub fn drctl_as(&self, uid: u32, gid: u32, args: &[&str]) -> Output {
        use std::os::unix::process::CommandExt;
        Command::new(&bins().drctl)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env_remove("DRD_SOCKET")
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap()
    }
}

/// Copies the tree `from` to `to` as `cp -a` does (modes, times, links kept).
pub fn copy_tree(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp -a: {}", text(&out));
}

/// Milliseconds since the Unix epoch, as drd stamps snapshots and audit entries.
pub fn unix_ms_now() -> i64 {
    i64::try_from(std::time::UNIX_EPOCH.elapsed().unwrap().as_millis()).unwrap()
}

/// Returns once the clock is past `unix_ms`, so what the test does next is stamped
/// strictly later (a wait on the clock itself, not a guess at a delay).
pub fn wait_clock_past(unix_ms: i64) {
    while unix_ms_now() <= unix_ms {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The state letter (`R`, `S`, `T`, `Z`, ...) in a `/proc/PID[/task/TID]/stat` file, or
/// `None` once the process or thread is gone.
pub fn proc_state(stat: &Path) -> Option<char> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // The name in parentheses may hold spaces and parentheses itself.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// True when the tests run as root, which tests that act as other users need; otherwise
/// [`real_part_missing`] says why the test does not run (and fails it under CI).
pub fn running_as_root(why: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        real_part_missing("root", why);
    }
    root
}

/// Asserts that the trees at `a` and `b` hold the same names, kinds, bytes, modes,
/// mtimes, symlink targets and hardlink groups.
pub fn assert_same_tree(a: &Path, b: &Path) {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    let mut links_a: HashMap<u64, PathBuf> = HashMap::new();
    let mut links_b: HashMap<u64, PathBuf> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).unwrap(),
            std::fs::symlink_metadata(&pb)
                .unwrap_or_else(|e| panic!("{} missing in restore: {e}", pb.display())),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", rel.display());
        assert_eq!(ma.mode(), mb.mode(), "mode of {}", rel.display());
        if !ma.file_type().is_symlink() && !ma.is_dir() {
            assert_eq!(
                (ma.mtime(), ma.mtime_nsec()),
                (mb.mtime(), mb.mtime_nsec()),
                "mtime of {}",
                rel.display()
            );
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).unwrap(),
                std::fs::read_link(&pb).unwrap()
            );
        } else if ma.is_file() {
            assert_eq!(ma.len(), mb.len(), "size of {}", rel.display());
            assert!(
                std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(),
                "content of {} differs",
                rel.display()
            );
            if ma.nlink() > 1 {
                // Files that share an inode in the source share one in the restore.
                let first_a = links_a
                    .entry(ma.ino())
                    .or_insert_with(|| rel.clone())
                    .clone();
                let first_b = links_b
                    .entry(mb.ino())
                    .or_insert_with(|| rel.clone())
                    .clone();
                assert_eq!(first_a, first_b, "hardlink group of {}", rel.display());
            }
        } else if ma.is_dir() {
            let mut names_a: Vec<_> = std::fs::read_dir(&pa)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            let mut names_b: Vec<_> = std::fs::read_dir(&pb)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names_a.sort();
            names_b.sort();
            assert_eq!(names_a, names_b, "entries of {}", rel.display());
            stack.extend(names_a.into_iter().map(|n| rel.join(n)));
        }
    }
}

/// The environment variable that forces the seed of the random test inputs (as in
/// drd-repo's tests/common).
pub const SEED_VAR: &str = "DRD_TEST_SEED";

/// The seed of this test's random inputs (for [`random_bytes`]): `DRD_TEST_SEED` when
/// set, a fresh one otherwise. It is printed, so a failing run can be repeated with the
/// same inputs (`DRD_TEST_SEED=N cargo nextest run ...`).
pub fn test_seed() -> u64 {
    let seed = match std::env::var(SEED_VAR) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_VAR}={v} is not a u64: {e}")),
        // The standard library's per-process random hash keys, so no rand crate here.
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        }
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    eprintln!("random inputs of {test}: {SEED_VAR}={seed}");
    seed
}

/// `n` pseudo-random bytes from `seed` (xorshift; fast and deterministic).
pub fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

#[path = "support/gate.rs"]
pub mod gate;

impl Daemon {
    /// Starts `drctl ARGS` against this daemon without waiting, output piped (collect
    /// it with [`gate::finish`]).
    pub fn spawn_drctl(&self, args: &[&str]) -> Child {
        Command::new(&bins().drctl)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env_remove("DRD_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}
