"""Scale runs (bench/run --scale): how drd's cost grows with the number of files and bytes.

For each size: a first backup into an empty repository, an unchanged re-run, the
daemon's VmRSS after and VmHWM, the repository size, and the limit (tar | zstd) of the
first backup. The corpora are generated into WORK/scale-N (N tiny files) and
WORK/scale-GgiB (large files), deterministic, and reused when their stamp says they are
complete (no manifest: hashing a million files would take longer than the backup).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import MiB, SEED, du_bytes, log, loud
from gen import VariedText, gen_text

SCALE_VERSION = 1
PER_DIR = 1000


def _write_dir(root: Path, k: int, n: int, text_pool: bytes, rand_pool: bytes) -> int:
    """Folder k of a scale corpus: files k*PER_DIR .. up to n, 64 B - 1 KiB, own seed."""
    r = random.Random(SEED + 500 + k)
    d = f"{root}/d{k // 100:03d}/{k % 100:02d}"
    os.makedirs(d, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    total = 0
    for i in range(k * PER_DIR, min(n, (k + 1) * PER_DIR)):
        size = r.randint(64, 1024)
        pool = text_pool if r.random() < 0.7 else rand_pool
        off = r.randrange(len(pool) - size)
        fd = os.open(f"{d}/t{i:07d}", flags, 0o644)
        os.write(fd, pool[off:off + size])
        os.close(fd)
        total += size
    return total


def gen_files(root: Path, n: int) -> int:
    r = random.Random(SEED + 499)
    text_pool, rand_pool = gen_text(r, 4 * MiB), r.randbytes(4 * MiB)
    root.mkdir(parents=True)
    dirs = (n + PER_DIR - 1) // PER_DIR
    with ThreadPoolExecutor(max_workers=4) as ex:
        return sum(ex.map(lambda k: _write_dir(root, k, n, text_pool, rand_pool), range(dirs)))


def gen_big(root: Path, gib: float) -> int:
    """Files of 16-64 MiB made of 1 MiB blocks, half random, half text (each text block
    with its own letter permutation, so nothing dedups); ~0.5 GB/s in Python."""
    r = random.Random(SEED + 600)
    vt = VariedText(r)
    root.mkdir(parents=True)
    left = total = int(gib * 1024 * MiB)
    i = 0
    while left > 0:
        size = min(left, r.randint(16, 64) * MiB)
        sub = root / f"{i // 50:02d}"
        sub.mkdir(exist_ok=True)
        with open(sub / f"big-{i:04d}.dat", "wb") as f:
            n = size
            while n > 0:
                b = min(n, MiB)
                f.write(r.randbytes(b) if r.random() < 0.5 else vt.block(b))
                n -= b
        left -= size
        i += 1
    return total


def ensure_scale_corpus(work: Path, kind: str, size) -> tuple[Path, dict]:
    """WORK/scale-N or WORK/scale-GgiB, reused when its stamp matches."""
    name = f"scale-{size}" if kind == "files" else f"scale-{size:g}gib"
    root, stamp = work / name, work / f"{name}.json"
    key = {"version": SCALE_VERSION, "seed": SEED, "kind": kind, "size": size}
    if stamp.exists() and root.exists():
        st = json.loads(stamp.read_text())
        if all(st.get(k) == v for k, v in key.items()):
            log(f"  {name}: reused ({st['files']} files, {st['bytes'] / MiB:.0f} MiB, "
                f"generated in {st['gen_s']:.1f}s)")
            return root, st
    if root.exists():
        shutil.rmtree(root)
    if stamp.exists():
        stamp.unlink()
    t0 = time.monotonic()
    nbytes = gen_files(root, size) if kind == "files" else gen_big(root, size)
    os.sync()
    files = size if kind == "files" else sum(len(fs) for _, _, fs in os.walk(root))
    st = {**key, "name": name, "files": files, "bytes": nbytes, "gen_s": time.monotonic() - t0}
    stamp.write_text(json.dumps(st))
    log(f"  {name}: generated {files} files, {nbytes / MiB:.0f} MiB in {st['gen_s']:.1f}s")
    return root, st


def run_scale(args, work: Path, make_tool, limit_cls, cmd, prepare_cache, errors: list) -> list[dict]:
    """make_tool(name, corpus) gives a fresh Tool; returns one row per corpus and tool."""
    sizes = [("files", int(x)) for x in args.scale_sizes.split(",") if x.strip()]
    if args.scale_gib > 0:
        sizes.append(("gib", args.scale_gib))
    tools = [t for t in args.tool_list if t in ("drd", "restic")]
    if len(tools) < len(args.tool_list):
        log("  --scale runs drd and restic only; borg is left out")
    rows = []
    for kind, size in sizes:
        log(f"\n-- scale: {size} {'files' if kind == 'files' else 'GiB'}")
        root, st = ensure_scale_corpus(work, kind, size)
        lim = limit_cls(work, root, cmd)
        prepare_cache(root)
        lres = lim.backup(f"scale-{st['name']}")
        for t in tools:
            tool = make_tool(t, root)
            for p in (tool.repo, work / "drd-state", work / "restic-cache"):
                shutil.rmtree(p, ignore_errors=True)
            (work / "drd.key").unlink(missing_ok=True)
            row = {"corpus": st["name"], "files": st["files"], "bytes": st["bytes"], "tool": t,
                   "gen_s": st["gen_s"], "limit_s": lres["wall_s"] if lres["rc"] == 0 else None}
            res = tool.setup()
            if res["rc"] != 0 or (t == "drd" and tool.begin()):
                errors.append(f"scale {st['name']}: {t} setup failed")
                loud(f"{t} setup failed on {st['name']}")
                continue
            try:
                for ph in ("first", "unchanged"):
                    prepare_cache(root)
                    res = tool.phase(ph)
                    row[f"{ph}_s"] = res.get("wall_s")
                    row[f"{ph}_ok"] = tool.ok_rc(res["rc"]) and not res.get("stop_problem")
                    if not row[f"{ph}_ok"]:
                        errors.append(f"scale {st['name']}: {t} {ph} failed rc={res['rc']} "
                                      f"{res.get('stderr_tail', '')[-300:]}")
                    for k in (("vmrss_mib", "vmhwm_mib") if t == "drd" else ("rss_mib",)):
                        if res.get(k) is not None:
                            row[k] = max(row.get(k, 0), res[k]) if k == "rss_mib" else res[k]
                    mem = (f"VmRSS {row.get('vmrss_mib') or 0:.0f} MiB, VmHWM {row.get('vmhwm_mib') or 0:.0f} MiB"
                           if t == "drd" else f"peak RSS {row.get('rss_mib') or 0:.0f} MiB")
                    log(f"  [{t}] {ph}: {res.get('wall_s') or 0:.2f} s, {mem}")
            finally:
                if t == "drd":
                    tool.stop_daemon()
            row["repo_bytes"] = du_bytes(tool.repo)
            rows.append(row)
            shutil.rmtree(tool.repo, ignore_errors=True)
    return rows
