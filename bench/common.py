"""Shared helpers for bench/run: constants, logging, parsing, formatting."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20261123
PASSWORD = "drd-bench-not-a-secret"
MiB = 1 << 20
KiB = 1 << 10

# ----------------------------------------------------------------------------------
# small helpers


def log(msg: str = "") -> None:
    print(msg, flush=True)


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!!! {msg}\n{bar}\n", flush=True)


def du_bytes(path: Path) -> int | None:
    if not path.exists():
        return None
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return int(out.stdout.split()[0])


def parse_time_v(path: Path) -> dict:
    """Parse GNU time -v output: peak RSS (KiB), user and system CPU (s), exit status."""
    res: dict = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return res
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size (kbytes):"):
            res["max_rss_kib"] = int(line.rsplit(":", 1)[1])
        elif line.startswith("User time (seconds):"):
            res["user_s"] = float(line.rsplit(":", 1)[1])
        elif line.startswith("System time (seconds):"):
            res["sys_s"] = float(line.rsplit(":", 1)[1])
        elif line.startswith("Exit status:"):
            res["exit_status"] = int(line.rsplit(":", 1)[1])
        elif line.startswith("Command terminated by signal"):
            res["signal"] = int(line.rsplit(" ", 1)[1])
    return res


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def fmt(v, digits=1) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"

