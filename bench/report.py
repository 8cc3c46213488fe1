"""Tables and targets for bench/run: one run's table, the summary over runs, scale runs."""

from __future__ import annotations

import statistics

from common import MiB, fmt

PHASES = ["first", "unchanged", "changed", "restore", "verify"]
PHASE_TITLE = {
    "first": "first backup",
    "unchanged": "unchanged re-run",
    "changed": "re-run after 5% change",
    "restore": "full restore",
    "verify": "full read-verify",
}
# rows of a table: (phase, title, key of the time)
ROWS = [(ph, PHASE_TITLE[ph], "wall_s") for ph in PHASES]
ROWS.insert(4, ("restore", "restore + sync", "restore_sync_s"))
FLAT_MIB = 16.0      # "VmRSS flat": largest minus smallest VmRSS after a phase
IDLE_MIB = 40.0      # an idle daemon after the run


def ok_cell(results: dict, ph: str, t: str) -> dict | None:
    c = results.get(ph, {}).get(t)
    return c if c and c.get("ok") else None


def ratio(results: dict, ph: str, a: str, b: str, key: str = "wall_s") -> float | None:
    """a's time / b's time in a phase, when both ran fine."""
    x, y = ok_cell(results, ph, a), ok_cell(results, ph, b)
    if x and y and x.get(key) is not None and y.get(key):
        return x[key] / y[key]
    return None


def header_lines(meta: dict, tools: list[str]) -> list[str]:
    L = [f"# drd backup benchmark, {meta['date']}", ""]
    L.append(f"- corpus `{meta['corpus']}`: {meta['corpus_mib']:.0f} MiB, {meta['corpus_files']} files "
             f"(after the change: {meta['changed_mib']:.0f} MiB, {meta['changed_files']} files); "
             f"change: ~{meta['change']['percent_of_corpus']}% of bytes, "
             f"{meta['change']['files_touched']} files modified, {meta['change']['files_added']} added, "
             f"{meta['change']['files_deleted']} deleted")
    L.append(f"- host: {meta['host']}")
    L.append("- versions: " + "; ".join(f"{k}: {v}" for k, v in meta["versions"].items())
             + f"; repo at {meta['drd_commit']}")
    L.append(f"- page cache: {meta['cache_mode']}")
    L.append(f"- drd daemon: {meta['daemon_mode']}")
    L.append(f"- runs: {meta['runs']}; order: interleaved, phase by phase; within a phase: "
             f"{', '.join(tools)}, then the limit")
    L.append("")
    return L


def render_run(results: dict, tools: list[str], drd_mem: dict) -> list[str]:
    """The table of one run: ratios first, then times, repository sizes, memory."""
    has = {t: any(results.get(ph, {}).get(t) for ph in PHASES) for t in tools + ["limit"]}
    hdr = ["phase"]
    if "drd" in tools and "restic" in tools:
        hdr.append("drd/restic")
    if "drd" in tools:
        hdr.append("drd/limit")
    hdr += [f"{t} s" for t in tools] + ["limit s"]
    hdr += [f"{t} CPU s" for t in tools] + ["limit CPU s"]
    hdr += [f"{t} repo MiB" for t in tools]
    if "drd" in tools:
        hdr += ["drd VmRSS after MiB", "drd VmHWM MiB"]
    hdr += [f"{t} RSS MiB" for t in tools if t != "drd"]
    L = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|"]
    for ph, title, key in ROWS:
        cells = {t: results.get(ph, {}).get(t) for t in tools + ["limit"]}
        row = [title]
        if "drd" in tools and "restic" in tools:
            row.append(fmt(ratio(results, ph, "drd", "restic", key), 2))
        if "drd" in tools:
            row.append(fmt(ratio(results, ph, "drd", "limit", key), 2))
        for t in tools + ["limit"]:
            c = cells[t]
            if c is None:
                row.append("-" if t == "limit" or has[t] else "not run")
            else:
                row.append("FAIL" if not c["ok"] else fmt(c.get(key), 2))
        for t in tools + ["limit"]:
            c = cells[t]
            row.append(fmt(c.get("cpu_s") if c and c["ok"] else None, 2))
        for t in tools:
            c = cells[t]
            row.append(fmt(c["repo_bytes"] / MiB if c and c.get("repo_bytes") is not None else None))
        if "drd" in tools:
            c = cells["drd"]
            row.append(fmt(c.get("vmrss_mib") if c else None, 0))
            row.append(fmt(c.get("vmhwm_mib") if c else None, 0))
        for t in tools:
            if t != "drd":
                c = cells[t]
                row.append(fmt(c.get("rss_mib") if c else None, 0))
        L.append("| " + " | ".join(row) + " |")
    if drd_mem.get("idle_vmrss_mib") is not None:
        L.append("")
        L.append(f"drd idle {drd_mem['idle_after_s']:.0f} s after the last phase: VmRSS "
                 f"{drd_mem['idle_vmrss_mib']:.1f} MiB, VmHWM {drd_mem.get('idle_vmhwm_mib', 0):.1f} MiB.")
    return L


NOTE = ("Ratios: time / time (below 1: drd faster; drd/limit 1.3 = 30 % slower than the limit). "
        "Time: wall seconds of the command (drd: of the drctl call; the daemon was started "
        "before and is not counted). limit: `tar -c | zstd -3 -T<cores> > /dev/null` of the "
        "corpus for the first backup, `tar -x` of a tar already in the page cache for the "
        "restore. CPU: user + system seconds (drd: the daemon's, from /proc/PID/stat before "
        "and after the drctl call; the others and the limit: `/usr/bin/time -v`, with the "
        "processes they waited for); on a noisy machine the CPU moves less than the wall time. "
        "Repo: `du -sb` after the phase. drd VmRSS after / VmHWM: the daemon's, from "
        "/proc after the phase (VmHWM: peak since the daemon started). restic/borg RSS: peak "
        "of the command (`/usr/bin/time -v`). restore + sync: the restore plus an `os.sync()` "
        "right after it (drd syncs the restored files itself before it answers; restic, borg "
        "and tar leave them in the page cache).")


def evaluate_targets(results: dict, meta: dict, drd_mem: dict) -> list[dict]:
    out = []

    def add(name, ok, detail, value=None):
        if ok is None:
            out.append({"name": name, "verdict": "N/A", "detail": detail})
        else:
            out.append({"name": name, "verdict": "PASS" if ok else "FAIL", "detail": detail,
                        "value": value})

    for ph, want in (("first", 1.5), ("restore", 2.0)):
        name = f"{PHASE_TITLE[ph]} at least {want}x faster than restic"
        rr = ratio(results, ph, "restic", "drd")
        if rr is None:
            add(name, None, "drd or restic did not run/succeed")
        else:
            d, r = results[ph]["drd"], results[ph]["restic"]
            add(name, rr >= want, f"restic {r['wall_s']:.2f} s / drd {d['wall_s']:.2f} s = {rr:.2f}x", rr)
    name = "first backup within 1.3x of the limit (tar | zstd -3)"
    rl = ratio(results, "first", "drd", "limit")
    if rl is None:
        add(name, None, "drd or the limit did not run/succeed")
    else:
        detail = (f"drd {results['first']['drd']['wall_s']:.2f} s / limit "
                  f"{results['first']['limit']['wall_s']:.2f} s = {rl:.2f}x")
        written = results["first"]["limit"].get("written_s")
        if written:
            detail += (f" (the limit writing its output to disk and syncing it: {written:.2f} s, "
                       f"drd/that {results['first']['drd']['wall_s'] / written:.2f}x)")
        add(name, rl <= 1.3, detail, rl)
    d = ok_cell(results, "unchanged", "drd")
    name = f"unchanged re-run under 2 s ({meta['corpus_files']} files; meant for ~100,000)"
    add(name, d["wall_s"] < 2 if d else None,
        f"drd {d['wall_s']:.2f} s" if d else "drd did not run/succeed", d["wall_s"] if d else None)
    for ph, when in (("first", "after the first backup"), ("changed", "after the 3 backups")):
        d, r = ok_cell(results, ph, "drd"), ok_cell(results, ph, "restic")
        name = f"drd repository no larger than restic's ({when})"
        if d and r and d.get("repo_bytes") and r.get("repo_bytes"):
            q = d["repo_bytes"] / r["repo_bytes"]
            add(name, q <= 1, f"drd {d['repo_bytes'] / MiB:.1f} MiB vs restic "
                              f"{r['repo_bytes'] / MiB:.1f} MiB ({q:.3f}x)", q)
        else:
            add(name, None, "drd or restic did not run/succeed")
    drd = [results.get(ph, {}).get("drd") or {} for ph in PHASES]
    hwm = [c["vmhwm_mib"] for c in drd if c.get("vmhwm_mib")]
    restic = [c.get("rss_mib") for ph in PHASES for c in [results.get(ph, {}).get("restic")]
              if c and c.get("rss_mib")]
    name = "drd peak RSS over the run (daemon VmHWM) below restic's peak"
    if hwm and restic:
        add(name, max(hwm) < max(restic), f"drd {max(hwm):.0f} MiB vs restic {max(restic):.0f} MiB",
            max(hwm))
    else:
        add(name, None, "drd's or restic's RSS not measured")
    rss = [c["vmrss_mib"] for c in drd if c.get("vmrss_mib")]
    name = f"drd VmRSS flat from phase to phase (largest - smallest after a phase <= {FLAT_MIB:.0f} MiB)"
    if len(rss) >= 2 and meta.get("daemon_mode", "").startswith("one"):
        add(name, max(rss) - min(rss) <= FLAT_MIB,
            "after each phase: " + " / ".join(f"{x:.0f}" for x in rss) + " MiB", max(rss) - min(rss))
    else:
        add(name, None, "needs one daemon for the run and two phases")
    name = f"drd idle after the run under {IDLE_MIB:.0f} MiB VmRSS"
    v = drd_mem.get("idle_vmrss_mib")
    add(name, v < IDLE_MIB if v is not None else None,
        f"{v:.1f} MiB after {drd_mem['idle_after_s']:.0f} s idle" if v is not None else "not measured", v)
    return out


def render_targets(targets: list[dict]) -> list[str]:
    return [f"- **{tg['verdict']}** {tg['name']}: {tg['detail']}" for tg in targets]


def render_summary(runs: list[dict], tools: list[str]) -> list[str]:
    """Over several runs: per phase min / median / max of every column, and the ratios of each run."""
    cols = tools + ["limit"]
    hdr = ["phase"]
    if "drd" in tools and "restic" in tools:
        hdr.append("drd/restic per run")
    if "drd" in tools:
        hdr.append("drd/limit per run")
    hdr += [f"{t} s min / med / max" for t in cols]
    L = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * len(hdr)) + "|"]
    for ph, title, key in ROWS:
        row = [title]
        for a, b in (("drd", "restic"), ("drd", "limit")):
            if a in tools and (b == "limit" or b in tools):
                rs = [ratio(r["results"], ph, a, b, key) for r in runs]
                row.append(" / ".join(fmt(x, 2) for x in rs))
        for t in cols:
            v = [c[key] for r in runs for c in [ok_cell(r["results"], ph, t)] if c and c.get(key) is not None]
            row.append(f"{min(v):.2f} / {statistics.median(v):.2f} / {max(v):.2f}" if v else "-")
        L.append("| " + " | ".join(row) + " |")
    if "drd" in tools:
        L.append("")
        for i, r in enumerate(runs, 1):
            rss = [fmt((r["results"].get(ph, {}).get("drd") or {}).get("vmrss_mib"), 0) for ph in PHASES]
            hwm = max([c.get("vmhwm_mib", 0) for ph in PHASES
                       for c in [r["results"].get(ph, {}).get("drd") or {}]] or [0])
            L.append(f"- run {i}: drd VmRSS after each phase {' / '.join(rss)} MiB, VmHWM {hwm:.0f} MiB, "
                     f"idle {fmt(r['drd_mem'].get('idle_vmrss_mib'))} MiB")
    L.append("")
    L.append("Targets, verdict per run:")
    L.append("")
    for j, tg in enumerate(runs[0]["targets"]):
        L.append(f"- {tg['name']}: " + " / ".join(r["targets"][j]["verdict"] for r in runs))
    return L


def render_scale(rows: list[dict]) -> list[str]:
    hdr = ["corpus", "files", "MiB", "tool", "first backup s", "limit s", "unchanged re-run s",
           "VmRSS after MiB", "VmHWM MiB", "peak RSS MiB", "repo MiB"]
    L = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|"]
    for r in rows:
        L.append("| " + " | ".join([
            r["corpus"], str(r["files"]), fmt(r["bytes"] / MiB, 0), r["tool"],
            fmt(r.get("first_s"), 2) if r.get("first_ok", True) else "FAIL",
            fmt(r.get("limit_s"), 2),
            fmt(r.get("unchanged_s"), 2) if r.get("unchanged_ok", True) else "FAIL",
            fmt(r.get("vmrss_mib"), 0), fmt(r.get("vmhwm_mib"), 0), fmt(r.get("rss_mib"), 0),
            fmt(r["repo_bytes"] / MiB if r.get("repo_bytes") else None)]) + " |")
    return L
