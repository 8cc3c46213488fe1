"""Deterministic data generators for the bench corpora: text, logs, code, SQLite rows."""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

from common import MiB

# ----------------------------------------------------------------------------------
# deterministic corpus

_BASE_WORDS = (
    "the of and to in is that for it as was with be by on not this are or from at which "
    "but have an they you were their one all we can has there been if more when will would "
    "who so no time data backup server request file system error value user process memory "
    "disk network cluster node service restore snapshot database table index query commit "
    "rollback transaction latency throughput replica primary secondary config daemon socket "
    "kernel thread mutex buffer cache page block sector volume mount partition journal "
    "checksum hash chunk pack blob repository archive retention schedule policy monitor alert "
    "health circuit breaker deadline timeout retry backoff queue worker scheduler tenant "
    "account invoice order customer payment shipment warehouse inventory product catalog "
    "price discount tax currency report metric counter gauge histogram label target scrape "
    "container image layer registry deploy release version build artifact pipeline stage "
    "review merge branch tag issue ticket incident outage recovery drill failover quorum "
    "leader follower election heartbeat lease token session cookie header payload response "
    "status code message warning notice debug trace span context parent child sibling root "
    "leaf tree graph edge vertex path route gateway proxy balancer upstream downstream "
    "north south east west alpha beta gamma delta epsilon zeta theta lambda sigma omega"
).split()


def _word_table() -> list[bytes]:
    words = [w.encode() for w in _BASE_WORDS]
    table = []
    for i in range(256):
        w = words[i % len(words)]
        if i % 37 == 5:
            w = w.capitalize() + b".\n"
        elif i % 11 == 3:
            w = w + b"."
        elif i % 7 == 2:
            w = w + b","
        elif i >= len(words):
            w = w + str(i).encode()
        table.append(w)
    return table


WORD_TABLE = _word_table()


def gen_text(r: random.Random, nbytes: int) -> bytes:
    """Compressible, English-like text of exactly nbytes (zstd ~3-4x)."""
    parts = []
    have = 0
    while have < nbytes:
        k = max(64, (nbytes - have) // 6 + 16)
        s = b" ".join([WORD_TABLE[x] for x in r.randbytes(k)]) + b"\n"
        parts.append(s)
        have += len(s)
    return b"".join(parts)[:nbytes]


_LOG_MSGS = [
    b"GET /api/v1/items/%d status=200 dur_ms=%d",
    b"POST /api/v1/orders/%d status=201 dur_ms=%d",
    b"GET /healthz status=200 dur_ms=%d peer=10.0.%d.7",
    b"cache miss key=user:%d fill_ms=%d",
    b"db query rows=%d dur_ms=%d stmt=select_orders_by_customer",
    b"retrying upstream attempt=%d backoff_ms=%d",
    b"connection reset by peer fd=%d after_ms=%d",
    b"gc pause heap_mb=%d pause_us=%d",
]
_LOG_LEVELS = [b"INFO ", b"INFO ", b"INFO ", b"INFO ", b"DEBUG", b"DEBUG", b"WARN ", b"ERROR"]
_LOG_COMPONENTS = [b"api", b"worker-1", b"worker-2", b"worker-3", b"db-pool", b"cache", b"sched", b"http"]


def gen_log(r: random.Random, nbytes: int, start_s: int) -> tuple[bytes, int]:
    """Log-like lines, ~nbytes (ends on a line), timestamps from start_s (seconds)."""
    lines = []
    have = 0
    t_ms = start_s * 1000
    rnd = r.random
    randrange = r.randrange
    while have < nbytes:
        t_ms += randrange(1, 900)
        s = t_ms // 1000
        day = 1 + (s // 86400) % 28
        sod = s % 86400
        lvl = _LOG_LEVELS[randrange(8)]
        comp = _LOG_COMPONENTS[randrange(8)]
        msg = _LOG_MSGS[randrange(8)] % (randrange(100000), int(rnd() * rnd() * 5000))
        line = b"2026-11-%02dT%02d:%02d:%02d.%03dZ %s [%s] req=%08x %s\n" % (
            day, sod // 3600, (sod // 60) % 60, sod % 60, t_ms % 1000, lvl, comp,
            r.getrandbits(32), msg)
        lines.append(line)
        have += len(line)
    return b"".join(lines), t_ms // 1000


def loguniform(r: random.Random, lo: int, hi: int) -> int:
    return int(math.exp(r.uniform(math.log(lo), math.log(hi))))


_IDENTS = [w.encode() for w in _BASE_WORDS if w.isalpha() and len(w) > 2]
_CODE_LINES = [
    b"def %s_%s(%s, %s):\n",
    b"    %s = %s.get(%s, %d)\n",
    b"    if %s is None or %s > %d:\n        return %s\n",
    b"    for %s in %s.%s():\n        %s += %d\n",
    b"    # %s the %s before the %s\n",
    b"    return %s(%s, %s=%d)\n\n\n",
    b"class %s%s:\n    \"\"\"%s of a %s.\"\"\"\n\n",
    b"    self.%s = [%s for %s in %s if %s]\n",
    b"    raise ValueError(f\"%s {%s} %s %d\")\n",
    b"    log.debug(\"%s %s\", %s, %d)\n",
]


def gen_code(r: random.Random, nbytes: int) -> bytes:
    """Source-code-like lines (identifiers, keywords, numbers) of exactly nbytes."""
    lines = []
    have = 0
    pick = r.choice
    while have < nbytes:
        tpl = _CODE_LINES[r.randrange(len(_CODE_LINES))]
        args = tuple(r.randrange(1000) if fmt_ == b"d" else pick(_IDENTS)
                     for fmt_ in _fmt_kinds(tpl))
        line = tpl % args
        lines.append(line)
        have += len(line)
    return b"".join(lines)[:nbytes]


def _fmt_kinds(tpl: bytes) -> list[bytes]:
    return [tpl[i + 1:i + 2] for i in range(len(tpl) - 1) if tpl[i:i + 1] == b"%"]


_LETTERS = b"abcdefghijklmnopqrstuvwxyz"


class VariedText:
    """Fast text (or code): slices of a seeded pool, each through its own letter permutation.

    gen_text runs at ~15 MB/s; this at several hundred. Every block gets a fresh
    permutation of the 26 lower-case letters, so blocks do not dedup against each
    other (content-defined chunks differ) while compressing like the pool (~3-4x).
    """

    def __init__(self, r: random.Random, pool_mib: int = 8, code: bool = False):
        self.r = r
        self.pool = (gen_code if code else gen_text)(r, pool_mib * MiB)

    def block(self, nbytes: int) -> bytes:
        r = self.r
        off = r.randrange(len(self.pool) - nbytes) if nbytes < len(self.pool) else 0
        table = bytes.maketrans(_LETTERS, bytes(r.sample(_LETTERS, 26)))
        data = self.pool[off:off + nbytes].translate(table)
        while len(data) < nbytes:
            data += self.pool[:nbytes - len(data)].translate(table)
        return data


def write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _sqlite_rows(r: random.Random, start: int, count: int):
    skus = [f"SKU-{i:05d}" for i in range(5000)]
    for i in range(start, start + count):
        yield (
            i,
            f"customer-{r.randrange(50000):05d}",
            f"user{r.randrange(10**7)}@example.{['com', 'net', 'org'][i % 3]}",
            skus[r.randrange(5000)],
            r.randrange(1, 20),
            round(r.random() * 500, 2),
            gen_text(r, r.randrange(40, 160)).decode(),
            f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
        )


def make_sqlite(path: Path, r: random.Random, rows: int) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, email TEXT, sku TEXT,"
        " qty INTEGER, price REAL, note TEXT, created TEXT)")
    con.execute("CREATE INDEX orders_customer ON orders(customer)")
    con.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?)", _sqlite_rows(r, 1, rows))
    con.commit()
    con.close()


def add_events(path: Path, r: random.Random, vt: VariedText, nbytes: int) -> int:
    """Appends to an `events` table JSON-like text payloads (0.3-3 KiB), 1 in 8 with a
    random attachment, until about nbytes are in; returns the table's row count."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, ts TEXT, kind TEXT,"
                " payload TEXT, attachment BLOB)")
    (i,) = con.execute("SELECT coalesce(max(id), 0) + 1 FROM events").fetchone()
    left = nbytes
    while left > 0:
        rows, got = event_rows(r, vt, i, min(left, 16 * MiB))
        con.executemany("INSERT INTO events VALUES (?,?,?,?,?)", rows)
        i += len(rows)
        left -= got
    con.commit()
    (n,) = con.execute("SELECT count(*) FROM events").fetchone()
    con.close()
    return n


def event_payload(r: random.Random, text: bytes, i: int) -> str:
    size = r.randrange(300, 3072)
    off = r.randrange(len(text) - size)
    return '{"id": %d, "body": "%s"}' % (i, text[off:off + size].decode())


def event_rows(r: random.Random, vt: VariedText, start: int, nbytes: int) -> tuple[list, int]:
    kinds = ["order.created", "order.paid", "user.login", "job.finished", "alert.fired"]
    rows = []
    have = 0
    i = start
    text = vt.block(4 * MiB)
    while have < nbytes:
        payload = event_payload(r, text, i)
        blob = r.randbytes(r.randrange(512, 4096)) if r.random() < 0.125 else None
        t = 1_700_000_000 + i * 7
        rows.append((i, f"2026-11-{1 + (t // 86400) % 28:02d}T{(t // 3600) % 24:02d}:"
                        f"{(t // 60) % 60:02d}:{t % 60:02d}Z", kinds[i % 5], payload, blob))
        have += len(payload) + (len(blob) if blob else 0)
        i += 1
    return rows, have
