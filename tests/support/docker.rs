//! Docker for integration tests: whether an engine answers, a tiny test image built
//! without a registry, and containers that are removed when the test ends.
//!
//! The image is the statically linked busybox from Debian's `busybox-static` with a
//! symlink per applet, imported with `docker import`, so tests need no image pull.
//! Everything goes through the `docker` CLI: tests check what an operator would see,
//! independently of the bollard client the daemon uses.
//!
//! ```ignore
//! if !helper::docker::require_docker() { return; }
//! let web = Container::new("web").volume("data", "/data").label("app", "web").start();
//! assert_eq!(web.status(), "running");
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The test image every helper here runs.
pub const IMAGE: &str = "drd-test-busybox:1";

/// Label put on every container and volume made here, for cleaning up by hand
/// (`docker rm -f $(docker ps -aq --filter label=drd-test)`).
pub const TEST_LABEL: &str = "drd-test";

/// Where the static busybox comes from (Debian package busybox-static).
const BUSYBOX: &str = "/bin/busybox";

/// Runs `docker ARGS` and returns its output (never panics on a failed command).
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
}

/// Runs `docker ARGS`, panics with its stderr unless it succeeds, returns trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// True when a Docker engine answers. Otherwise [`crate::real_part_missing`] prints why
/// the test is skipped and this returns false, or it panics under `CI=true`, so a
/// missing engine cannot turn the Docker tests into silent passes there.
pub fn require_docker() -> bool {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    let answer = ANSWER.get_or_init(|| {
        let out = Command::new("docker")
            .args(["version", "--format", "{{.Server.APIVersion}}"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(err) => Err(format!("cannot run the docker CLI: {err}")),
        }
    });
    match answer {
        Ok(()) => true,
        Err(why) => {
            crate::real_part_missing("a Docker engine", why);
            false
        }
    }
}

/// Builds the test image `drd-test-busybox:1` unless it exists, and returns its name.
///
/// Safe to call from many tests and test processes at once: an flock on a file in
/// /tmp serialises the builders, and each checks for the image again under the lock.
pub fn busybox_image() -> String {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if image_exists() {
            return;
        }
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/drd-test-busybox.lock")
            .expect("open /tmp/drd-test-busybox.lock");
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("lock /tmp/drd-test-busybox.lock");
        if !image_exists() {
            build_image();
        }
    });
    IMAGE.to_owned()
}

fn image_exists() -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .status
        .success()
}

fn build_image() {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install Debian's busybox-static (apt-get install busybox-static) \
         to build the Docker test image"
    );
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    assert!(list.status.success(), "busybox --list failed");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    for dir in ["tmp", "etc", "data", "proc", "sys", "dev"] {
        std::fs::create_dir(root.path().join(dir)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.path().join("tmp"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();

    let tarball = root.path().with_extension("tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&tarball)
        .arg(".")
        .output()
        .expect("run tar");
    assert!(
        tar.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let tarball_arg = tarball.display().to_string();
    docker_ok(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        "--change",
        "ENV PATH=/bin",
        &tarball_arg,
        IMAGE,
    ]);
    let _ = std::fs::remove_file(&tarball);
}

/// A name no other test (in this or another process) uses: `drd-test-PID-N-base`.
pub fn unique_name(base: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("drd-test-{}-{n}-{base}", std::process::id())
}

/// The default command: sleeps until stopped, and exits at once on SIGTERM (busybox
/// as PID 1 would otherwise ignore it and `docker stop` would wait out its timeout).
pub const SLEEP_FOREVER: &[&str] = &["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"];

/// A container to start: built with [`Container::new`], started with
/// [`ContainerSpec::start`].
#[must_use]
pub struct ContainerSpec {
    name: String,
    args: Vec<String>,
    mounts: Vec<(String, String)>,
    /// (short name, target) of volumes to create.
    named_volumes: Vec<(String, String)>,
    labels: Vec<(String, String)>,
    restart: Option<String>,
}

impl ContainerSpec {
    /// Mounts a new named volume at `target` (created with a unique name when the
    /// container starts, removed with it). `short` names it for
    /// [`Container::volume_name`].
    pub fn volume(mut self, short: &str, target: &str) -> Self {
        self.named_volumes
            .push((short.to_owned(), target.to_owned()));
        self
    }

    /// Bind-mounts the host folder `host` at `target`.
    pub fn bind(mut self, host: &Path, target: &str) -> Self {
        self.mounts
            .push((host.display().to_string(), target.to_owned()));
        self
    }

    /// Adds a label `key=value`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the restart policy (`no`, `always`, `unless-stopped`, `on-failure`).
    pub fn restart(mut self, policy: &str) -> Self {
        self.restart = Some(policy.to_owned());
        self
    }

    /// The command to run instead of [`SLEEP_FOREVER`].
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Runs the container (detached) and waits until it is running.
    pub fn start(self) -> Container {
        let image = busybox_image();
        // The guard exists before anything is made, so a failure half-way cleans up.
        let mut container = Container {
            name: self.name,
            id: String::new(),
            named_volumes: Vec::new(),
        };
        let mut mounts = self.mounts;
        for (short, target) in &self.named_volumes {
            let name = format!("{}-{short}", container.name);
            docker_ok(&["volume", "create", "--label", TEST_LABEL, &name]);
            container.named_volumes.push(name.clone());
            mounts.push((name, target.clone()));
        }
        let mut argv: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            container.name.clone(),
            "--label".into(),
            TEST_LABEL.into(),
        ];
        for (key, value) in &self.labels {
            argv.extend(["--label".into(), format!("{key}={value}")]);
        }
        for (source, target) in &mounts {
            argv.extend(["-v".into(), format!("{source}:{target}")]);
        }
        if let Some(policy) = &self.restart {
            argv.extend(["--restart".into(), policy.clone()]);
        }
        argv.push(image);
        argv.extend(self.args.iter().cloned());
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        container.id = docker_ok(&args);
        container.wait_status("running", Duration::from_secs(20));
        container
    }
}

/// A running test container, force-removed (with the volumes it made) when dropped.
pub struct Container {
    name: String,
    id: String,
    named_volumes: Vec<String>,
}

impl Container {
    /// A container spec named `drd-test-PID-N-base`, running [`SLEEP_FOREVER`] in the
    /// test image, labelled `drd-test`.
    // Returns the spec, not Self: a `Container` exists only once it runs, and
    // `Container::new("web")...start()` reads as what it does.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(base: &str) -> ContainerSpec {
        ContainerSpec {
            name: unique_name(base),
            args: SLEEP_FOREVER.iter().map(|s| (*s).to_owned()).collect(),
            mounts: Vec::new(),
            named_volumes: Vec::new(),
            labels: Vec::new(),
            restart: None,
        }
    }

    /// The container's full name (without a leading '/').
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's full id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The full name of the volume made by `.volume(short, ..)`:
    /// `CONTAINER-NAME-short`.
    pub fn volume_name(&self, short: &str) -> String {
        let name = format!("{}-{short}", self.name);
        assert!(
            self.named_volumes.contains(&name),
            "no volume {short} on {}",
            self.name
        );
        name
    }

    /// Where Docker keeps the volume's contents on this host.
    pub fn volume_path(&self, short: &str) -> PathBuf {
        let name = self.volume_name(short);
        PathBuf::from(docker_ok(&[
            "volume",
            "inspect",
            "--format",
            "{{.Mountpoint}}",
            &name,
        ]))
    }

    /// `docker inspect` of the container, parsed.
    pub fn inspect(&self) -> serde_json::Value {
        let text = docker_ok(&["inspect", &self.id]);
        let mut all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        all.remove(0)
    }

    /// `.State.Status`: created, running, paused, restarting, exited, ...
    pub fn status(&self) -> String {
        docker_ok(&["inspect", "--format", "{{.State.Status}}", &self.id])
    }

    /// Waits up to `timeout` for `.State.Status` to be `want`.
    pub fn wait_status(&self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container {} is {status}, not {want}, after {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `docker exec CONTAINER ARGS`; panics unless it succeeds; returns stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["exec", self.id.as_str()];
        all.extend_from_slice(args);
        docker_ok(&all)
    }

    /// `docker pause`.
    pub fn pause(&self) {
        docker_ok(&["pause", &self.id]);
    }

    /// `docker unpause`.
    pub fn unpause(&self) {
        docker_ok(&["unpause", &self.id]);
    }

    /// `docker stop` (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&self) {
        docker_ok(&["stop", &self.id]);
    }

    /// `docker start`.
    pub fn start(&self) {
        docker_ok(&["start", &self.id]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let target = if self.id.is_empty() {
            &self.name
        } else {
            &self.id
        };
        let _ = docker(&["rm", "-f", "-v", target]);
        for volume in &self.named_volumes {
            let _ = docker(&["volume", "rm", "-f", volume]);
        }
    }
}
