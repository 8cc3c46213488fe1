"""The deterministic 5 % change of a corpus, with undo so the base corpus can be reused.

One routine for every corpus: LAYOUT says which folders play which part (large files
get 1 MiB regions overwritten, medium files a 4-64 KiB region, small files are rewritten
whole, logs get lines appended, the SQLite database gets rows updated and inserted) and
how big a share of the corpus each part changes. A corpus without some part changes
more of what it has. For `mixed` the change is the same as before the corpora existed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
from pathlib import Path

from common import KiB, MiB, SEED
from corpus import total_bytes
from gen import (VariedText, _sqlite_rows, event_payload, event_rows, gen_log, gen_text,
                 loguniform, write_file)

TEXT_SUFFIXES = (".txt", ".log", ".py", ".json", ".conf", ".md", ".csv", ".html")
# parts of each corpus and the share of its bytes each part changes
LAYOUT = {
    "mixed": {"large": ("large/",), "medium": ("text/", "random/"), "small": ("small/",),
              "logs": ("logs/",), "db": "db/app.db",
              "share": {"large": 0.03, "medium": 0.01, "small": 0.005, "logs": 0.005}},
    "text": {"large": ("large/",), "medium": ("docs/", "src/"), "small": ("notes/",),
             "logs": ("logs/",), "db": None,
             "share": {"large": 0.025, "medium": 0.01, "small": 0.005, "logs": 0.01}},
    "random": {"large": ("large/",), "medium": ("blobs/",), "small": ("small/",), "logs": (),
               "db": None, "share": {"large": 0.03, "medium": 0.015, "small": 0.005, "logs": 0}},
    "small": {"large": (), "medium": (), "small": ("small/",), "logs": (), "db": None,
              "share": {"large": 0, "medium": 0, "small": 0.045, "logs": 0}},
    "db": {"large": ("large/",), "medium": (), "small": (), "logs": (), "db": "db/app.db",
           "share": {"large": 0.02, "medium": 0, "small": 0, "logs": 0}},
}


def is_text(rel: str) -> bool:
    return rel.endswith(TEXT_SUFFIXES)


def mutate(corpus: Path, base: dict, undo: Path, name: str = "mixed") -> dict:
    lay = LAYOUT[name]
    share = lay["share"]
    T = total_bytes(base)
    r = random.Random(SEED + 1)
    keys = sorted(base)
    large = [k for k in keys if lay["large"] and k.startswith(lay["large"])]
    medium = [k for k in keys if lay["medium"] and k.startswith(lay["medium"])]
    small = [k for k in keys if lay["small"] and k.startswith(lay["small"])]
    logs = [k for k in keys if lay["logs"] and k.startswith(lay["logs"])]
    s = T / (1024 * MiB)

    # plan first (all paths), save originals, then apply
    n_regions = max(1, round(share["large"] * T / MiB)) if large else 0
    region_files = [large[i % len(large)] for i in range(n_regions)]
    med_pick = r.sample(medium, min(len(medium), max(4, round(0.25 * len(medium)))))
    small_pick = r.sample(small, min(len(small) // 2, max(10, round(share["small"] * T / 1000))))
    rest = sorted(set(small) - set(small_pick))
    n_del = max(2, round(200 * s))
    del_pick = r.sample(rest, min(n_del, len(rest)))
    text_rest = sorted(set(k for k in medium if is_text(k)) - set(med_pick))
    del_pick += r.sample(text_rest, min(2, len(text_rest)))
    db = lay["db"]
    touched = sorted(set(region_files) | set(med_pick) | set(small_pick) | set(del_pick)
                     | set(logs) | ({db} if db else set()))
    n_new_small = max(5, round(200 * s))
    added = [f"new/n{i:05d}.txt" for i in range(n_new_small)] + ["new/report-a.txt", "new/report-b.txt"]

    if undo.exists():
        shutil.rmtree(undo)
    (undo / "files").mkdir(parents=True)
    for rel in touched:
        dst = undo / "files" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(corpus / rel, dst)
    (undo / "undo.json").write_text(json.dumps({"saved": touched, "added": added + ["new"]}))

    changed = 0
    # 1. ~3 %: 1 MiB regions overwritten in the large files
    for rel in region_files:
        size = base[rel][0]
        blk = min(MiB, size)
        off = r.randrange(0, max(1, size - blk)) & ~4095
        data = gen_text(r, blk) if is_text(rel) else r.randbytes(blk)
        with open(corpus / rel, "r+b") as f:
            f.seek(off)
            f.write(data)
        changed += blk
    # 2. ~1 %: a region (4-64 KiB) in some medium files, until the budget is spent
    budget = int(share["medium"] * T)
    for rel in med_pick:
        if budget <= 0:
            break
        size = base[rel][0]
        blk = min(size, r.randint(4 * KiB, 64 * KiB), budget)
        off = r.randrange(0, max(1, size - blk))
        data = gen_text(r, blk) if is_text(rel) else r.randbytes(blk)
        with open(corpus / rel, "r+b") as f:
            f.seek(off)
            f.write(data)
        changed += blk
        budget -= blk
    # 3. ~0.5 %: small files rewritten whole (new size; avg ~1 KB)
    for rel in small_pick:
        size = loguniform(r, 64, 4096)
        write_file(corpus / rel, gen_text(r, size))
        changed += size
    # 4. deletions
    for rel in del_pick:
        (corpus / rel).unlink()
    # 5. ~0.5 %: appended to every log
    per = max(1024, int(share["logs"] * T) // max(1, len(logs)))
    for i, rel in enumerate(logs):
        data, _ = gen_log(r, per, 1_800_000_000 + i * 10_000)
        with open(corpus / rel, "ab") as f:
            f.write(data)
        changed += len(data)
    # 6. ~0.5 %: new files
    (corpus / "new").mkdir(exist_ok=True)
    for rel in added[:-2]:
        data = gen_text(r, loguniform(r, 256, 4096))
        write_file(corpus / rel, data)
        changed += len(data)
    for rel in added[-2:]:
        data = gen_text(r, max(4 * KiB, int(0.0015 * T)))
        write_file(corpus / rel, data)
        changed += len(data)
    info = {
        "bytes_changed_approx": changed,
        "percent_of_corpus": round(100.0 * changed / T, 2),
        "files_touched": len(touched) - len(del_pick),
        "files_deleted": len(del_pick),
        "files_added": len(added),
    }
    if db:
        info.update(change_sqlite(corpus / db, r))
    return info


def change_sqlite(path: Path, r: random.Random) -> dict:
    """Orders: 2 % of the rows updated, 1 % more inserted. Events (the db corpus): 1 % of
    the rows get a new payload, 1 % more inserted."""
    con = sqlite3.connect(path)
    (nrows,) = con.execute("SELECT count(*) FROM orders").fetchone()
    upd = [(gen_text(r, r.randrange(40, 160)).decode(), r.randrange(1, 20), k)
           for k in sorted(r.sample(range(1, nrows + 1), max(1, nrows // 50)))]
    con.executemany("UPDATE orders SET note=?, qty=? WHERE id=?", upd)
    con.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?)",
                    _sqlite_rows(r, nrows + 1, max(1, nrows // 100)))
    out = {"sqlite_rows_updated": len(upd), "sqlite_rows_inserted": max(1, nrows // 100)}
    has_events = con.execute(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='events'").fetchone()[0]
    if has_events:
        (nev,) = con.execute("SELECT count(*) FROM events").fetchone()
        text = VariedText(r, 4).block(4 * MiB)
        eupd = [(event_payload(r, text, k), k)
                for k in sorted(r.sample(range(1, nev + 1), max(1, nev // 100)))]
        con.executemany("UPDATE events SET payload=? WHERE id=?", eupd)
        (avg,) = con.execute("SELECT avg(length(payload)) FROM events").fetchone()
        rows, _ = event_rows(r, VariedText(r, 4), nev + 1, int(avg * max(1, nev // 100)))
        con.executemany("INSERT INTO events VALUES (?,?,?,?,?)", rows)
        out.update(events_updated=len(eupd), events_inserted=len(rows))
    con.commit()
    con.close()
    return out


def revert(corpus: Path, undo: Path) -> bool:
    meta = undo / "undo.json"
    if not meta.exists():
        if undo.exists():
            shutil.rmtree(undo)
        return False
    info = json.loads(meta.read_text())
    for rel in info["added"]:
        p = corpus / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for rel in info["saved"]:
        src = undo / "files" / rel
        if src.exists():
            (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, corpus / rel)
    shutil.rmtree(undo)
    return True


