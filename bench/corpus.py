"""The bench corpora (mixed, text, random, small, db): generation, manifests, reuse.

Every corpus is generated from a seeded PRNG (same bytes on every run and machine) into
WORK/corpus-NAME, with its sha256 manifest in WORK/corpus-NAME.json; a run reuses it when
the manifest still matches. GEN_VERSION is per corpus: bump one when its generator changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import KiB, MiB, SEED, log
from gen import (VariedText, add_events, gen_log, gen_text, loguniform, make_sqlite,
                 write_file)

CORPORA = ["mixed", "text", "random", "small", "db"]
GEN_VERSION = {"mixed": 1, "text": 1, "random": 1, "small": 1, "db": 1}
# the small corpus: file count follows the size (uniform 64 B - 4 KiB, ~2 KiB average),
# capped here so a default 1 GiB run stays within a few minutes per tool
SMALL_AVG = (64 + 4096) // 2
SMALL_CAP = 500_000
TEXT_EXT = [".txt", ".json", ".py", ".conf", ".md", ".csv", ".html"]
BIN_EXT = [".bin", ".png", ".gz", ".dat"]


# ----------------------------------------------------------------------------------
# building blocks


def write_small_files(base: Path, r: random.Random, n: int, text_pool: bytes, rand_pool: bytes,
                      sizer, text_share: float = 0.7, per_dir: int = 50, fan: int = 20) -> None:
    """n small files, slices of the two pools at random offsets, per_dir per folder."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    d = ""
    for i in range(n):
        leaf = i // per_dir
        if i % per_dir == 0:
            d = f"{base}/{leaf // fan:03d}/{leaf % fan:02d}"
            os.makedirs(d, exist_ok=True)
        size = sizer()
        if r.random() < text_share:
            off = r.randrange(len(text_pool) - size)
            data = text_pool[off:off + size]
            ext = TEXT_EXT[i % len(TEXT_EXT)]
        else:
            off = r.randrange(len(rand_pool) - size)
            data = rand_pool[off:off + size]
            ext = BIN_EXT[i % len(BIN_EXT)]
        fd = os.open(f"{d}/f{i:06d}{ext}", flags, 0o644)
        os.write(fd, data)
        os.close(fd)


def write_disk_image(path: Path, r: random.Random, nbytes: int, text) -> None:
    """64 KiB blocks: 35 % zeros, 30 % random, 35 % text (text(n) makes n bytes)."""
    with open(path, "wb") as f:
        left = nbytes
        zero = bytes(64 * KiB)
        while left > 0:
            blk = min(left, 64 * KiB)
            x = r.random()
            if x < 0.35:
                f.write(zero[:blk])
            elif x < 0.65:
                f.write(r.randbytes(blk))
            else:
                f.write(text(blk))
            left -= blk


def write_sized(d: Path, r: random.Random, total: int, lo: int, hi: int, name: str, make) -> int:
    """Files of loguniform(lo, hi) bytes (make(n) gives the bytes) until total; 200 a folder."""
    left, i = total, 0
    while left > 0:
        size = min(left, loguniform(r, lo, hi))
        sub = d / f"{i // 200:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        write_file(sub / (name % i), make(size))
        left -= size
        i += 1
    return i


def write_big(path: Path, nbytes: int, make, blk: int = 8 * MiB) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            n = min(left, blk)
            f.write(make(n))
            left -= n


# ----------------------------------------------------------------------------------
# mixed: today's corpus, byte-identical to GEN_VERSION 1 of bench/run


def mixed_plan(size_mib: int) -> dict:
    """Budgets in bytes for each kind of data; file counts scale with size."""
    s = size_mib / 1024.0
    return {
        "small_files": max(200, round(97000 * s)),   # 64 B .. 4 KiB each, ~90 MiB at 1 GiB
        "logs_files": max(4, round(64 * s)),
        "logs_bytes": int(96 * MiB * s),
        "text_bytes": int(150 * MiB * s),             # 4 KiB .. 256 KiB files
        "random_bytes": int(160 * MiB * s),           # 16 KiB .. 2 MiB files
        "disk_img_bytes": int(192 * MiB * s),         # zero / random / text blocks
        "media_bytes": int(160 * MiB * s),            # incompressible
        "dump_bytes": int(128 * MiB * s),             # one big text dump
        "sqlite_rows": max(2000, round(200000 * s)),  # ~40 MiB at 1 GiB
    }


def gen_mixed(root: Path, size_mib: int) -> None:
    """Today's corpus (GEN_VERSION 1): every kind of data; see bench/README.md."""
    t0 = time.monotonic()
    plan = mixed_plan(size_mib)
    r = random.Random(SEED)
    root.mkdir(parents=True)

    # small files: slices of two pools (text and random) at random offsets/sizes
    text_pool = gen_text(r, 16 * MiB)
    rand_pool = r.randbytes(8 * MiB)
    n = plan["small_files"]
    write_small_files(root / "small", r, n, text_pool, rand_pool, lambda: loguniform(r, 64, 4096))
    log(f"  small files: {n} in {time.monotonic() - t0:.1f}s")

    # logs
    d = root / "logs"
    d.mkdir()
    per = plan["logs_bytes"] // plan["logs_files"]
    t_s = 1_700_000_000
    for i in range(plan["logs_files"]):
        data, t_s = gen_log(r, per, t_s)
        write_file(d / f"app-{i:03d}.log", data)

    # compressible text documents
    d = root / "text"
    d.mkdir()
    left, i = plan["text_bytes"], 0
    while left > 0:
        size = min(left, loguniform(r, 4 * KiB, 256 * KiB))
        sub = d / f"{i // 200:02d}"
        sub.mkdir(exist_ok=True)
        write_file(sub / f"doc-{i:05d}.txt", gen_text(r, size))
        left -= size
        i += 1

    # incompressible files (already-compressed media, archives)
    d = root / "random"
    d.mkdir()
    left, i = plan["random_bytes"], 0
    while left > 0:
        size = min(left, loguniform(r, 16 * KiB, 2 * MiB))
        write_file(d / f"blob-{i:05d}.jpg", r.randbytes(size))
        left -= size
        i += 1
    log(f"  logs, text, random files in {time.monotonic() - t0:.1f}s")

    # large files
    d = root / "large"
    d.mkdir()
    write_disk_image(d / "disk.img", r, plan["disk_img_bytes"], lambda n: gen_text(r, n))
    with open(d / "media.bin", "wb") as f:
        left = plan["media_bytes"]
        while left > 0:
            blk = min(left, 8 * MiB)
            f.write(r.randbytes(blk))
            left -= blk
    with open(d / "dump.txt", "wb") as f:
        left = plan["dump_bytes"]
        while left > 0:
            blk = min(left, 8 * MiB)
            f.write(gen_text(r, blk))
            left -= blk
    log(f"  large files in {time.monotonic() - t0:.1f}s")

    # SQLite database
    d = root / "db"
    d.mkdir()
    make_sqlite(d / "app.db", r, plan["sqlite_rows"])
    log(f"  sqlite in {time.monotonic() - t0:.1f}s")


# ----------------------------------------------------------------------------------
# the other corpora


def _begin(root: Path, size_mib: int, salt: int) -> tuple[float, random.Random]:
    """Creates root; returns the scale (1.0 at 1 GiB) and the corpus's own seeded PRNG."""
    root.mkdir(parents=True)
    return size_mib / 1024.0, random.Random(SEED + salt)


def gen_text_corpus(root: Path, size_mib: int) -> None:
    """Text-heavy: documents, source code, logs, a few small notes, one large text dump."""
    s, r = _begin(root, size_mib, 100)
    vt = VariedText(r)
    code = VariedText(r, 4, code=True)
    n_docs = write_sized(root / "docs", r, int(300 * MiB * s), 4 * KiB, 256 * KiB, "doc-%05d.txt", vt.block)
    n_src = write_sized(root / "src", r, int(150 * MiB * s), 1 * KiB, 64 * KiB, "mod_%05d.py", code.block)
    d = root / "logs"
    d.mkdir()
    n_logs = max(4, round(100 * s))
    per = int(200 * MiB * s) // n_logs
    t_s = 1_700_000_000
    for i in range(n_logs):
        data, t_s = gen_log(r, per, t_s)
        write_file(d / f"service-{i:03d}.log", data)
    n_notes = max(100, round(10000 * s))
    write_small_files(root / "notes", r, n_notes, vt.pool, vt.pool, lambda: loguniform(r, 64, 4096),
                      text_share=1.0)
    write_big(root / "large" / "dump.txt", int(350 * MiB * s), vt.block, blk=MiB)
    log(f"  {n_docs} docs, {n_src} source files, {n_logs} logs, {n_notes} notes, 1 dump")


def gen_random(root: Path, size_mib: int) -> None:
    """Mostly incompressible: random blobs of many sizes, one large archive, some small files."""
    s, r = _begin(root, size_mib, 200)
    n_blobs = write_sized(root / "blobs", r, int(560 * MiB * s), 16 * KiB, 8 * MiB, "blob-%05d.jpg",
                          r.randbytes)
    write_big(root / "large" / "archive.bin", int(400 * MiB * s), r.randbytes)
    n_small = max(200, round(20000 * s))
    write_small_files(root / "small", r, n_small, gen_text(r, 4 * MiB), r.randbytes(16 * MiB),
                      lambda: loguniform(r, 64, 4096), text_share=0.3)
    log(f"  {n_blobs} blobs, 1 archive, {n_small} small files")


def small_count(size_mib: int) -> int:
    return max(200, min(SMALL_CAP, round(size_mib * MiB / SMALL_AVG)))


def gen_small(root: Path, size_mib: int) -> None:
    """Many tiny files: 64 B - 4 KiB (uniform), 70 % text, 100 a folder; count from the size."""
    _, r = _begin(root, size_mib, 300)
    n = small_count(size_mib)
    write_small_files(root / "small", r, n, gen_text(r, 16 * MiB), r.randbytes(16 * MiB),
                      lambda: r.randint(64, 4096), per_dir=100, fan=100)
    log(f"  {n} small files (capped at {SMALL_CAP})")


def gen_db(root: Path, size_mib: int) -> None:
    """One large SQLite database (orders + events with text payloads) and a disk image."""
    s, r = _begin(root, size_mib, 400)
    vt = VariedText(r)
    (root / "db").mkdir()
    make_sqlite(root / "db" / "app.db", r, max(2000, round(200000 * s)))
    n = add_events(root / "db" / "app.db", r, vt, int(500 * MiB * s))
    (root / "large").mkdir()
    write_disk_image(root / "large" / "disk.img", r, int(300 * MiB * s), vt.block)
    log(f"  app.db: {max(2000, round(200000 * s))} orders, {n} events; disk.img")


GENERATORS = {"mixed": gen_mixed, "text": gen_text_corpus, "random": gen_random,
              "small": gen_small, "db": gen_db}


# ----------------------------------------------------------------------------------
# manifests


def _hash_file(p: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(p, "rb", buffering=0) as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
            size += len(b)
    return size, h.hexdigest()


def manifest(root: Path) -> dict[str, list]:
    """relative path -> [size, sha256] for every regular file under root."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            p = Path(dirpath) / fn
            if p.is_file() and not p.is_symlink():
                paths.append(p)
    paths.sort()
    with ThreadPoolExecutor(max_workers=4) as ex:
        results = list(ex.map(_hash_file, paths))
    return {str(p.relative_to(root)): [s, h] for p, (s, h) in zip(paths, results)}


def compare_manifests(want: dict, got: dict) -> list[str]:
    problems = []
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    if missing:
        problems.append(f"{len(missing)} files missing, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} unexpected files, e.g. {extra[:5]}")
    if differ:
        ex = [(k, want[k][0], got[k][0]) for k in differ[:5]]
        problems.append(f"{len(differ)} files differ (path, want size, got size), e.g. {ex}")
    return problems


def total_bytes(m: dict) -> int:
    return sum(v[0] for v in m.values())


def ensure_corpus(work: Path, name: str, size_mib: int) -> tuple[Path, dict, float | None]:
    """WORK/corpus-NAME, reused when its stored manifest matches, else generated.
    Returns (path, manifest, generation seconds or None when reused)."""
    corpus = work / f"corpus-{name}"
    stamp = work / f"corpus-{name}.json"
    key = {"corpus": name, "gen_version": GEN_VERSION[name], "seed": SEED, "size_mib": size_mib}
    t0 = time.monotonic()
    if stamp.exists() and corpus.exists():
        st = json.loads(stamp.read_text())
        if all(st.get(k) == v for k, v in key.items()):
            log(f"checking the existing {name} corpus against its manifest ...")
            m = manifest(corpus)
            if m == st["manifest"]:
                log(f"  corpus reused ({time.monotonic() - t0:.1f}s)")
                return corpus, m, None
            log("  corpus does not match its manifest; regenerating")
    if corpus.exists():
        shutil.rmtree(corpus)
    if stamp.exists():
        stamp.unlink()
    log(f"generating the {name} corpus ({size_mib} MiB) ...")
    GENERATORS[name](corpus, size_mib)
    gen_s = time.monotonic() - t0
    m = manifest(corpus)
    stamp.write_text(json.dumps({**key, "manifest": m}))
    log(f"  generated in {gen_s:.1f}s (manifest {time.monotonic() - t0 - gen_s:.1f}s)")
    return corpus, m, gen_s
