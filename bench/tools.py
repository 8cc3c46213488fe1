"""Running the tools (drd, restic, borg) and the limit (tar | zstd, tar -x), page cache."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import MiB, PASSWORD, REPO_ROOT, log, parse_time_v, tail

# ----------------------------------------------------------------------------------
# running commands


class Cmd:
    """Runs commands with wall time (monotonic), and under GNU time -v their CPU time
    (user + system, children waited for included) and, with rss, their peak RSS."""

    def __init__(self, logdir: Path):
        self.logdir = logdir

    def run(self, name: str, cmd: list[str], env: dict | None = None, cwd: Path | None = None,
            rss: bool = True, cpu: bool = False) -> dict:
        out, err, tf = (self.logdir / f"{name}.{x}" for x in ("out", "err", "time"))
        timed = rss or cpu
        full = (["/usr/bin/time", "-v", "-o", str(tf)] if timed else []) + cmd
        with open(out, "wb") as fo, open(err, "wb") as fe:
            t0 = time.monotonic()
            p = subprocess.run(full, env=env, cwd=cwd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
            wall = time.monotonic() - t0
        res = {"rc": p.returncode, "wall_s": wall, "cmd": " ".join(cmd), "log": str(out)}
        if timed:
            tv = parse_time_v(tf)
            if rss and "max_rss_kib" in tv:
                res["rss_mib"] = tv["max_rss_kib"] / 1024.0
            if "user_s" in tv and "sys_s" in tv:
                res["cpu_s"] = tv["user_s"] + tv["sys_s"]
        res["stdout"] = out.read_text(errors="replace")
        res["stderr_tail"] = tail(err)
        return res


# ----------------------------------------------------------------------------------
# tools


class Tool:
    name = "?"

    def __init__(self, args, work: Path, corpus: Path, cmd: Cmd):
        self.args, self.work, self.corpus, self.cmd = args, work, corpus, cmd
        self.repo = work / f"{self.name}-repo"

    def ok_rc(self, rc: int) -> bool:
        return rc == 0

    def restored_corpus(self, target: Path) -> Path:
        # all three store the absolute source path, borg without its leading slash
        return target / str(self.corpus).lstrip("/")

    def phase(self, phase: str, target: Path | None = None) -> dict:
        raise NotImplementedError


class Restic(Tool):
    name = "restic"

    def env(self):
        e = dict(os.environ)
        e.update(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(self.repo),
                 RESTIC_CACHE_DIR=str(self.work / "restic-cache"))
        return e

    def setup(self) -> dict:
        return self.cmd.run("restic-init", ["restic", "init", "--repository-version", "2"],
                            env=self.env())

    def phase(self, phase, target=None):
        e = self.env()
        if phase in ("first", "unchanged", "changed"):
            return self.cmd.run(f"restic-{phase}", ["restic", "backup", str(self.corpus)], env=e)
        if phase == "restore":
            return self.cmd.run("restic-restore",
                                ["restic", "restore", "latest", "--target", str(target)], env=e)
        if phase == "verify":
            return self.cmd.run("restic-verify", ["restic", "check", "--read-data"], env=e)
        raise ValueError(phase)


class Borg(Tool):
    name = "borg"

    def __init__(self, *a):
        super().__init__(*a)
        self.n = 0

    def env(self):
        e = dict(os.environ)
        e.update(BORG_PASSPHRASE=PASSWORD, BORG_BASE_DIR=str(self.work / "borg-base"),
                 BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
                 BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes")
        return e

    def ok_rc(self, rc):
        return rc in (0, 1)  # 1 = warning (e.g. a file changed while read)

    def setup(self):
        return self.cmd.run("borg-init", ["borg", "init", "--encryption", "repokey-blake2",
                                          str(self.repo)], env=self.env())

    def phase(self, phase, target=None):
        e = self.env()
        if phase in ("first", "unchanged", "changed"):
            self.n += 1
            return self.cmd.run(f"borg-{phase}", [
                "borg", "create", "--compression", "zstd,3",
                f"{self.repo}::bench-{self.n}", str(self.corpus)], env=e)
        if phase == "restore":
            return self.cmd.run("borg-restore", ["borg", "extract", f"{self.repo}::bench-{self.n}"],
                                env=e, cwd=target)
        if phase == "verify":
            return self.cmd.run("borg-verify", ["borg", "check", "--verify-data", str(self.repo)], env=e)
        raise ValueError(phase)


def proc_mem_kib(pid: int | None) -> dict:
    """VmRSS and VmHWM (KiB) of a live process, from /proc/PID/status."""
    out: dict = {}
    if not pid:
        return out
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def proc_cpu_s(pid: int | None) -> float | None:
    """CPU time (user + system, s) a live process has used so far, from /proc/PID/stat."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Fields after the command name, which is in parentheses and may hold spaces.
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# Seconds between a drd phase's end and the VmRSS reading (see Drd.phase).
SETTLE_S = 3.0


class Drd(Tool):
    """drd: the daemon does the work. One daemon for the whole phase sequence (started
    before the first phase, stopped after the last), or with fresh=True one per phase
    (the old behaviour). After every phase VmRSS and VmHWM come from /proc/PID/status."""

    name = "drd"

    def __init__(self, *a, bin_dir: Path, extra: list[str], fresh: bool = False):
        super().__init__(*a)
        self.drd = str(bin_dir / "drd")
        self.drctl = str(bin_dir / "drctl")
        self.extra = extra
        self.fresh = fresh
        self.config = self.work / "drd.toml"
        self.state = self.work / "drd-state"
        self.socket = self.state / "drd.sock"
        self.daemon: subprocess.Popen | None = None
        self.starts = 0

    def setup(self):
        key = self.work / "drd.key"
        res = self.cmd.run("drd-key", [self.drd, "key", "generate", "--out", str(key)], rss=False)
        if res["rc"] != 0:
            return res
        self.config.write_text(
            "# written by bench/run\n"
            "[daemon]\n"
            'state_dir = "drd-state"\n'
            'socket = "drd-state/drd.sock"\n'
            + "".join(f"{line}\n" for line in self.extra)
            + "[keys]\n"
            'files = ["drd.key"]\n'
            "[tiers.local]\n"
            'kind = "dir"\n'
            'path = "drd-repo"\n'
            # A scheduled drill (the first comes 10 minutes and some jitter after a fresh start)
            # would restore the corpus during a timed phase: the `small` run met one.
            "[drills]\n"
            "enabled = false\n"
            "[jobs.bench]\n"
            'tiers = ["local"]\n'
            f'sources = [ {{ kind = "path", path = {json.dumps(str(self.corpus))} }} ]\n')
        chk = self.cmd.run("drd-check-config", [self.drd, "check-config", "--config", str(self.config)],
                           rss=False)
        if chk["rc"] != 0:
            return chk
        return res

    def drctl_cmd(self, *a):
        return [self.drctl, "--socket", str(self.socket), *a]

    def start_daemon(self) -> str | None:
        self.starts += 1
        logf = self.cmd.logdir / f"drd-daemon-{self.starts}.log"
        with open(logf, "wb") as lf:
            self.daemon = subprocess.Popen(
                [self.drd, "run", "--config", str(self.config), "--log-format", "text"],
                stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                return f"daemon exited with {self.daemon.returncode} before it was ready:\n" + tail(logf)
            p = subprocess.run(self.drctl_cmd("status"), capture_output=True)
            if p.returncode == 0:
                return None
            time.sleep(0.1)
        self.stop_daemon()
        return "daemon not ready (drctl status) after 60 s"

    def memory(self) -> dict:
        """The daemon's VmRSS and VmHWM now, in MiB."""
        m = proc_mem_kib(self.daemon.pid if self.daemon else None)
        return {k: m[src] / 1024.0 for k, src in (("vmrss_mib", "VmRSS"), ("vmhwm_mib", "VmHWM"))
                if src in m}

    def stop_daemon(self) -> dict:
        res: dict = {}
        if self.daemon is None:
            return res
        try:
            self.daemon.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            rc = self.daemon.wait(timeout=120)
            if rc != 0:
                res["stop_problem"] = f"daemon exit status {rc} after SIGTERM"
        except subprocess.TimeoutExpired:
            res["stop_problem"] = "daemon did not stop within 120 s of SIGTERM; killed"
            self.daemon.kill()
            self.daemon.wait()
        self.daemon = None
        return res

    def begin(self) -> str | None:
        """Before the first phase: the long-lived daemon (not with fresh)."""
        return None if self.fresh else self.start_daemon()

    def finish(self, idle_s: float) -> dict:
        """After the last phase: idle for idle_s, read VmRSS, stop the daemon."""
        res: dict = {}
        if self.daemon is not None:
            time.sleep(idle_s)
            res = {f"idle_{k}": v for k, v in self.memory().items()}
            res["idle_after_s"] = idle_s
            res.update(self.stop_daemon())
        return res

    def phase(self, phase, target=None):
        if self.fresh or self.daemon is None:
            err = self.start_daemon()
            if err:
                return {"rc": -1, "wall_s": None, "stderr_tail": err, "cmd": "drd run"}
        if phase in ("first", "unchanged", "changed"):
            c = self.drctl_cmd("backup", "--job", "bench", "--json")
        elif phase == "restore":
            c = self.drctl_cmd("restore", "--backup-id", "latest", "--job", "bench",
                               "--target", str(target), "--json")
        elif phase == "verify":
            c = self.drctl_cmd("verify", "--job", "bench", "--read-data", "--json")
        else:
            raise ValueError(phase)
        pid = self.daemon.pid if self.daemon else None
        cpu_before = proc_cpu_s(pid)
        res = self.cmd.run(f"drd-{phase}", c, rss=False)
        cpu_after = proc_cpu_s(pid)
        if cpu_before is not None and cpu_after is not None:
            # The daemon's CPU for the phase; drctl's own is a few milliseconds.
            res["cpu_s"] = cpu_after - cpu_before
        if self.daemon is not None and self.daemon.poll() is not None:
            res["stop_problem"] = f"daemon died during the phase (exit {self.daemon.returncode})"
            self.daemon = None
        # The daemon gives a finished phase's memory back once it has been idle for a
        # second (its `memory` worker); read VmRSS after that, as an operator would see it.
        res["vmrss_at_end_mib"] = self.memory().get("vmrss_mib")
        time.sleep(SETTLE_S)
        res.update(self.memory())
        res["settle_s"] = SETTLE_S
        # peak of the daemon: VmHWM (over the whole run, or this phase with --fresh-daemon)
        if "vmhwm_mib" in res:
            res["rss_mib"] = res["vmhwm_mib"]
        if self.fresh:
            res.update(self.stop_daemon())
        try:
            res["json"] = json.loads(res["stdout"])
        except (ValueError, KeyError):
            pass
        return res


class Limit:
    """The machine's limit on the same data: `tar -c | zstd -3 -T<cores> > /dev/null` for a
    backup, `tar -x` from a tar file already in the page cache for a restore."""

    name = "limit"

    def __init__(self, work: Path, corpus: Path, cmd: Cmd):
        self.work, self.corpus, self.cmd = work, corpus, cmd
        self.cores = os.cpu_count() or 1
        self.tar = work / "limit.tar"

    def backup(self, phase: str) -> dict:
        sh = (f"set -o pipefail; tar -c -f - -C '{self.corpus}' . | zstd -3 -T{self.cores} -q -c "
              "> /dev/null")
        return self.cmd.run(f"limit-{phase}", ["bash", "-c", sh], rss=False, cpu=True)

    def backup_written(self, phase: str) -> dict:
        """The same pipeline writing its output next to the repositories and syncing that
        filesystem, as a backup tool must: where the disk, not the CPU, is the limit."""
        out = self.work / "limit.tar.zst"
        sh = (f"set -o pipefail; tar -c -f - -C '{self.corpus}' . | zstd -3 -T{self.cores} -q -f "
              f"-o '{out}' && sync -f '{out}'")
        res = self.cmd.run(f"limit-{phase}-written", ["bash", "-c", sh], rss=False)
        out.unlink(missing_ok=True)
        return res

    def prepare_restore(self) -> dict:
        """Writes WORK/limit.tar of the corpus as it is now and reads it into the page cache."""
        res = self.cmd.run("limit-tar", ["tar", "-c", "-f", str(self.tar), "-C", str(self.corpus), "."],
                           rss=False)
        os.sync()
        warm(self.tar)
        return res

    def restore(self, target: Path) -> dict:
        return self.cmd.run("limit-restore", ["tar", "-x", "-f", str(self.tar), "-C", str(target)],
                            rss=False, cpu=True)

    def cleanup(self) -> None:
        if self.tar.exists():
            self.tar.unlink()


# ----------------------------------------------------------------------------------
# page cache


def try_drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def warm(path: Path) -> None:
    """Read every file under path so it sits in the page cache."""
    def rd(p):
        try:
            with open(p, "rb", buffering=0) as f:
                while f.read(8 * MiB):
                    pass
        except OSError:
            pass
    files = [Path(d) / f for d, _, fs in os.walk(path) for f in fs]
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(rd, files))


# ----------------------------------------------------------------------------------
# setup: packages, build


def git_describe() -> str:
    """The commit drd was built from (plus '-dirty' when the work tree has changes)."""
    p = subprocess.run(["git", "describe", "--always", "--dirty", "--exclude", "*"], cwd=REPO_ROOT,
                       capture_output=True, text=True)
    return p.stdout.strip() or "unknown"


def ensure_packages() -> dict:
    need = [t for t in ("restic", "borg") if shutil.which(t) is None]
    if not os.path.exists("/usr/bin/time"):
        need.append("time")
    if need:
        log(f"installing restic borgbackup time (missing: {', '.join(need)}) ...")
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "restic", "borgbackup", "time"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    vers = {}
    for name, c in (("restic", ["restic", "version"]), ("borg", ["borg", "--version"])):
        p = subprocess.run(c, capture_output=True, text=True)
        vers[name] = (p.stdout or p.stderr).strip()
    return vers


def build_drd(no_build: bool) -> str | None:
    if not no_build:
        log("building drd and drctl (cargo build --release -p drd -p drctl) ...")
        p = subprocess.run(["cargo", "build", "--release", "-p", "drd", "-p", "drctl"], cwd=REPO_ROOT)
        if p.returncode != 0:
            return f"cargo build failed with exit code {p.returncode}"
    return None


def drd_usable(tool: Drd) -> str | None:
    for b in (tool.drd, tool.drctl):
        if not os.access(b, os.X_OK):
            return f"{b} not found (build it, or drop --no-build)"
    p = subprocess.run([tool.drctl, "backup", "--help"], capture_output=True, text=True)
    if p.returncode != 0:
        return "`drctl backup --help` fails: this drctl has no backup command yet:\n" + \
            (p.stderr or p.stdout).strip()[-600:]
    return None


