"""bench/monitoring: modeltui's monitor scraping 1,000 simulated deployments, against Prometheus doing the same.

    /work/main/.venv/bin/python bench/monitoring/run.py [--targets 1000] [--cycles 6] [--interval 15]
                                                        [--skip-prometheus] [--history-hours 26]
                                                        [--results FILE] [--json FILE]

1. ``endpoints.py`` in its own process: ``--targets`` listeners on 127.0.0.1, each a simulated runtime serving
   the real exposition of ``daemon/serving/metrics.py`` with counters advancing under steady traffic. Its CPU
   is measured apart and is nobody's.
2. modeltui, in this process (which does nothing else while it is measured): the daemon's own
   ``Monitor.scrape_cycle`` over those targets (``Target`` built by hand, as ``tests/monitor`` does, no
   deployment manager), storing into a fresh SQLite state directory through ``MonitorStore``, every
   ``--interval`` seconds for ``--cycles`` cycles; ``Monitor.maintain`` (compaction, rollups, retention) runs on the
   scheduler's cadence (5 s after the start, then every 60 s). Figures: wall time and CPU of each cycle, this
   process's CPU (``getrusage``, all threads) as a share of one core both over the whole window and over the
   steady state (from the start of cycle 2: the first cycle creates every series), samples written per cycle,
   and database growth; then the first cycle of a restarted daemon (a new ``MonitorStore`` and ``Monitor`` on
   the same state directory, reloading every deployment's series), wall and CPU.
3. History, cheaply: one deployment whose series are copied from a real scraped one (the one nearest the
   median of samples per cycle), each counter advancing by a Poisson number per cycle with the mean of its
   measured increase (fixed seed), is written with the store's own ``write_cycle``, ``compact``, ``rollup``
   and ``retention`` under a fake clock, every 15 s for ``--history-hours`` simulated hours (compaction and
   rollups every simulated 10 min, retention with the default settings). Bytes per raw sample in the
   10-minute chunks and per hourly block (their ``data`` + each row's share of the pages, from SQLite's
   ``dbstat``) come from that database; the steady-state size of 1,000 deployments (6 h of raw chunks, the
   frames not compacted yet, 30 days of hourly blocks, the defaults) is those bytes × what the defaults keep,
   scaled to the measured mean deployment, with the frames' bytes measured in step 2.
4. Prometheus (Debian's ``prometheus``) on loopback scraping the same targets at the same interval for the
   same number of cycles, keeping the same sample names (``metric_relabel_configs``; ``--prometheus-all``
   keeps everything), its CPU from ``/proc`` and its TSDB directory's growth (WAL + head chunks), plus a
   snapshot through the admin API (the head written as a compressed block) for bytes per sample.

Prints the figures with the issue's targets (a full cycle ≤ 2 s, ≤ 10 % of one core on average, 30 days of
1,000 deployments under 1 GiB) and writes ``RESULTS.md`` (the table it replaces moves under "Earlier runs").
A benchmark, not a CI gate: the exit code is 0 unless something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from daemon.monitor.derive import COUNTERS, KEPT  # noqa: E402
from daemon.monitor.scrape import Target  # noqa: E402
from daemon.monitor.service import RETENTION_EVERY, Monitor  # noqa: E402
from daemon.monitor.store import CHUNK, CHUNK_SECONDS, FRAME, HOURLY, MonitorStore, ScrapeResult  # noqa: E402
from daemon.settings import MonitorSection  # noqa: E402
from daemon.store.migrations import V7_BLOCKS  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
DAY = 86400
DEFAULT = MonitorSection()
MAINTENANCE_FIRST, MAINTENANCE_EVERY = 5.0, 60.0  # as daemon/monitor/scheduler.py schedules it
KINDS = {FRAME: "frames", CHUNK: "chunks", HOURLY: "hourly"}  # monitor_blocks.kind
SEED = 20261127  # the history's random traffic


# -- helpers -----------------------------------------------------------------------------------------------
def cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def cpu_of(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk (``du``) under ``path``, or of the file."""
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / f).stat().st_blocks * 512
    return total


def db_usage(state: Path) -> int:
    return sum(disk_usage(p) for p in state.glob("registry.db*"))


def checkpoint(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def dbstat(db: Path) -> dict[str, dict[str, Any]]:
    """Per kind of ``monitor_blocks`` (frames, chunks, hourly): rows, samples (``sum(n)``) and ``sum(length(data))``
    bytes; per monitor table and index, from SQLite's ``dbstat``: pages × page size (B-tree and overflow pages,
    incl. their free space) and payload; rows of the tables."""
    out: dict[str, dict[str, Any]] = {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        stats = conn.execute(
            "SELECT name, sum(pgsize), sum(payload) FROM dbstat WHERE name LIKE '%monitor%' GROUP BY name"
        ).fetchall()
        for name, size, payload in stats:
            out[name] = {"bytes": int(size), "payload": int(payload)}
        for table in ("monitor_series", "monitor_targets", "monitor_blocks"):
            out.setdefault(table, {"bytes": 0, "payload": 0})["rows"] = conn.execute(
                f"SELECT count(*) FROM {table}"
            ).fetchone()[0]
        for kind, name in KINDS.items():
            rows, samples, data, t0, t1 = conn.execute(
                "SELECT count(*), coalesce(sum(n), 0), coalesce(sum(length(data)), 0), coalesce(min(t0), 0), "
                "coalesce(max(t1), 0) FROM monitor_blocks WHERE kind = ?",
                (kind,),
            ).fetchone()
            out[name] = {"rows": int(rows), "samples": int(samples), "data": int(data), "t0": t0, "t1": t1}
        out["file"] = {"bytes": db.stat().st_size}
    return out


def table_bytes(stats: dict[str, dict[str, Any]], table: str) -> int:
    """A table's bytes with its indexes (``sqlite_autoindex_<table>_N``, ``ix_<table>*``)."""
    return sum(
        v.get("bytes", 0)
        for k, v in stats.items()
        if k == table or k.startswith((f"sqlite_autoindex_{table}_", f"ix_{table}"))
    )


def row_overhead(stats: dict[str, dict[str, Any]]) -> float:
    """Bytes per ``monitor_blocks`` row beyond its ``data``: the table's and its index's pages (incl. free
    space) − the data bytes of all its rows, ÷ its rows."""
    data = sum(stats[k]["data"] for k in KINDS.values())
    return (table_bytes(stats, "monitor_blocks") - data) / max(1, stats["monitor_blocks"]["rows"])


def page_overhead(db: Path, kind: int, rows_wanted: int = 5000) -> float:
    """Bytes per row of one kind of block beyond its data when the table holds many of them (a few dozen rows
    of one deployment leave half-empty pages that 1,000 deployments would fill, and small hourly blocks would be
    charged the chunks' overflow pages): the database's blocks of that kind, inserted again in time order under
    enough deployment names to make ``rows_wanted`` rows into a fresh table with the same schema, then
    SQLite's ``dbstat`` pages of the table and its index − the data, ÷ rows."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        rows = conn.execute(
            "SELECT deployment, kind, t0, t1, n, data FROM monitor_blocks WHERE kind = ? ORDER BY t0", (kind,)
        ).fetchall()
    if not rows:
        return math.nan
    copies = max(1, math.ceil(rows_wanted / len(rows)))
    with tempfile.TemporaryDirectory() as tmp, contextlib.closing(sqlite3.connect(Path(tmp) / "m.db")) as conn:
        conn.execute(f"PRAGMA page_size = {int(page)}")
        conn.executescript(V7_BLOCKS)
        conn.executemany(
            "INSERT INTO monitor_blocks (deployment, kind, t0, t1, n, data) VALUES (?, ?, ?, ?, ?, ?)",
            ((f"{name}/{i}", *row) for name, *row in rows for i in range(copies)),
        )
        conn.commit()
        pages = conn.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name IN ('monitor_blocks', 'ix_monitor_blocks')"
        ).fetchone()[0]
        count, data = conn.execute("SELECT count(*), sum(length(data)) FROM monitor_blocks").fetchone()
    return (int(pages) - int(data)) / int(count)


def kind_bytes(stats: dict[str, dict[str, Any]], kind: str, overhead: float) -> float:
    """Bytes of one kind of block: its data + the per-row overhead × its rows."""
    return stats[kind]["data"] + overhead * stats[kind]["rows"]


def frame_sizes(db: Path, first: float, overhead: float, deployments: int) -> dict[str, float]:
    """Frames of the cycles after the first (which writes every series): the median cycle's bytes (data + the
    per-row overhead × its frames) per deployment, and per sample."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        cycles = conn.execute(
            "SELECT count(*), sum(n), sum(length(data)) FROM monitor_blocks WHERE kind = ? AND t1 > ? GROUP BY t1",
            (FRAME, first),
        ).fetchall()
    if not cycles:
        return {"cycles": 0, "bytes_per_deployment_cycle": math.nan, "bytes_per_sample": math.nan}
    per_cycle = sorted((data + overhead * rows, samples) for rows, samples, data in cycles)
    size, samples = per_cycle[len(per_cycle) // 2]
    return {
        "cycles": len(cycles),
        "bytes_per_deployment_cycle": size / max(1, deployments),
        "bytes_per_sample": size / max(1, samples),
    }


def human(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"


# -- the simulated deployments -----------------------------------------------------------------------------
class Endpoints:
    def __init__(self, n: int, features: int, classes: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "endpoints.py"), "--targets", str(n), "--features", str(features),
             "--classes", str(classes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORTS "):
            raise RuntimeError(f"endpoints.py did not start: {line!r}")
        self.ports = [int(p) for p in line.split()[1].split(",")]
        self.ps = psutil.Process(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- modeltui ----------------------------------------------------------------------------------------------
async def modeltui_side(ports: list[int], state: Path, args: argparse.Namespace, sim: Endpoints) -> dict[str, Any]:
    settings = MonitorSection(scrape_interval_seconds=args.interval, scrape_concurrency=args.concurrency)
    store = MonitorStore(state)
    started = time.time() - 60
    targets = [Target(f"dep-{i:04d}", "127.0.0.1", p, f"inst-{i:04d}/k", started) for i, p in enumerate(ports)]
    monitor = Monitor(settings, store, lambda: targets)
    captured: list[list[ScrapeResult]] = []
    first_t: list[float] = []
    # Keep what the last two cycles scraped (for the history part): wrap the store's writer, same arguments.
    write_cycle = store.write_cycle

    def keep_and_write(t: float, results: list[ScrapeResult]) -> int:
        captured.append(results)
        del captured[:-2]
        if not first_t:
            first_t.append(t)
        return write_cycle(t, results)

    store.write_cycle = keep_and_write  # type: ignore[method-assign]
    db = state / "registry.db"
    cycles: list[dict[str, Any]] = []
    maint: list[dict[str, float]] = []
    excluded_cpu = 0.0  # the benchmark's own checkpoint after cycle 1 (not the monitor's work)
    size_after_first = 0

    t0 = time.monotonic()
    window = args.cycles * args.interval

    async def maintenance() -> None:
        at = MAINTENANCE_FIRST
        while at < window:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            c0, w0 = cpu_self(), time.monotonic()
            await monitor.maintain()
            maint.append({"at": at, "seconds": time.monotonic() - w0, "cpu": cpu_self() - c0})
            at += MAINTENANCE_EVERY

    cpu0, sim0 = cpu_self(), cpu_of(sim.ps)
    steady_cpu0 = steady_t0 = 0.0  # at the start of cycle 2: what follows is the steady state
    mtask = asyncio.create_task(maintenance())
    for k in range(args.cycles):
        await asyncio.sleep(max(0.0, t0 + k * args.interval - time.monotonic()))
        c = cpu_self()
        if k == 1:
            steady_cpu0, steady_t0 = c, time.monotonic()
        report = await monitor.scrape_cycle()
        # The process's CPU (all threads: the store writes in one) while the cycle ran; a maintenance run
        # overlapping it would be counted here too (none does at the scheduler's cadence unless a cycle is slow).
        cycle_cpu = cpu_self() - c
        cycles.append(
            {"cycle": k + 1, "seconds": report.seconds, "cpu": cycle_cpu, "up": report.up,
             "targets": report.targets, "samples": report.samples, "db_bytes": db_usage(state)}
        )  # fmt: skip
        print(f"  modeltui cycle {k + 1}: {report.seconds:.2f} s, {cycle_cpu:.2f} s CPU, "
              f"{report.up}/{report.targets} up, {report.samples:,} samples", flush=True)  # fmt: skip
        if k == 0:
            c = cpu_self()
            checkpoint(db)
            size_after_first = db.stat().st_size
            excluded_cpu += cpu_self() - c
    await asyncio.sleep(max(0.0, t0 + window - time.monotonic()))
    t_end, cpu_end = time.monotonic(), cpu_self()
    elapsed = t_end - t0
    cpu = cpu_end - cpu0 - excluded_cpu
    # Steady state: everything the process did from the start of cycle 2 to the end of the window (cycles
    # 2..N and the maintenance runs in that span; the excluded checkpoint came before it).
    steady_s, steady_cpu = t_end - steady_t0, cpu_end - steady_cpu0
    sim_cpu = cpu_of(sim.ps) - sim0
    await mtask
    rss = psutil.Process().memory_info().rss
    await monitor.wait_idle()
    # One retention pass over this database, after the window (the daemon runs it every 10 minutes).
    w, c = time.monotonic(), cpu_self()
    await asyncio.to_thread(
        store.retention, time.time(), raw_seconds=DEFAULT.raw_retention_hours * 3600,
        hour_seconds=DEFAULT.rollup_retention_days * DAY,
    )  # fmt: skip
    retention = {"seconds": time.monotonic() - w, "cpu": cpu_self() - c}
    store.close()
    stats = dbstat(db)
    frame_overhead = page_overhead(db, FRAME)
    frames = frame_sizes(db, first_t[0], frame_overhead, len(targets))
    frames["row_overhead"] = frame_overhead
    size_end = stats["file"]["bytes"]
    growth = (size_end - size_after_first) / max(1, args.cycles - 1)
    steady = [c["samples"] for c in cycles[1:]] or [cycles[0]["samples"]]
    # Per deployment: samples of its last cycle (history picks the one nearest the median).
    per_dep = sorted(len([1 for _ in r.samples]) for r in captured[-1])
    restart = await restart_cycle(state, settings, targets)
    print(f"  modeltui after a restart: {restart['seconds']:.2f} s, {restart['cpu']:.2f} s CPU "
          f"(store opened in {restart['open_seconds']:.2f} s)", flush=True)  # fmt: skip
    return {
        "settings": settings.model_dump(),
        "cycles": cycles,
        "maintenance": maint,
        "retention": retention,
        "window_s": elapsed,
        "cpu_s": cpu,
        "cpu_share": cpu / elapsed,
        "cpu_per_cycle_s": cpu / args.cycles,
        "cpu_per_cycle": [c["cpu"] for c in cycles],
        "steady_window_s": steady_s,
        "steady_cpu_s": steady_cpu,
        "steady_cpu_share": steady_cpu / steady_s,
        "restart_cycle": restart,
        "sim_cpu_share": sim_cpu / elapsed,
        "rss_bytes": rss,
        "samples_first_cycle": cycles[0]["samples"],
        "samples_per_cycle": statistics.mean(steady),
        "kept_series_per_target": statistics.median(per_dep) if per_dep else 0,
        "db_after_first": size_after_first,
        "db_end": size_end,
        "growth_per_cycle": growth,
        "targets": len(targets),
        "frames": frames,
        "dbstat": stats,
        "captured": captured,
    }


async def restart_cycle(state: Path, settings: MonitorSection, targets: list[Target]) -> dict[str, Any]:
    """What a restarted daemon pays: a new ``MonitorStore`` on the same state directory (the old one closed, its
    figures taken) and a new ``Monitor`` over the same targets, whose first ``scrape_cycle`` reloads every
    deployment's series and last values. The simulator still serves (the caller stops it afterwards)."""
    w, c = time.monotonic(), cpu_self()
    store = MonitorStore(state)
    opened = {"open_seconds": time.monotonic() - w, "open_cpu": cpu_self() - c}
    try:
        monitor = Monitor(settings, store, lambda: targets)
        c = cpu_self()
        report = await monitor.scrape_cycle()
        cpu = cpu_self() - c
        await monitor.wait_idle()
    finally:
        store.close()
    return {"seconds": report.seconds, "cpu": cpu, "up": report.up, "targets": report.targets,
            "samples": report.samples, **opened}  # fmt: skip


# -- history under a fake clock ----------------------------------------------------------------------------
def history_side(captured: list[list[ScrapeResult]], state: Path, hours: float, interval: float) -> dict[str, Any]:
    prev_results, last_results = captured[-2], captured[-1]
    changed = []
    for a, b in zip(prev_results, last_results, strict=True):
        if a.up and b.up:
            pa = {(m, lab): v for m, lab, v in a.samples}
            changed.append((sum(1 for m, lab, v in b.samples if pa.get((m, lab)) != v), a, b))
    changed.sort(key=lambda x: x[0])
    median_changed, a, b = changed[len(changed) // 2]
    mean_changed = statistics.mean(c for c, _, _ in changed)
    base = {(m, lab): v for m, lab, v in a.samples}
    keys = [(m, lab) for m, lab, _ in b.samples]
    # Each counter advances by a Poisson number per cycle with the mean of its measured increase (a gauge, or
    # a counter that did not move, stays put): values that look like traffic, not a constant stride.
    values = np.array([base.get((m, lab), 0.0) for m, lab, _ in b.samples], np.float64)
    means = np.array([max(0.0, v - base.get((m, lab), 0.0)) if m in COUNTERS else 0.0 for m, lab, v in b.samples],
                     np.float64)  # fmt: skip
    rng = np.random.default_rng(SEED)
    store = MonitorStore(state)
    n = int(hours * 3600 / interval)
    start = math.floor((time.time() - n * interval) / 3600) * 3600
    lag = interval + DEFAULT.timeout_seconds + 1  # as Monitor.maintain lags behind the scrapes
    wall0 = time.monotonic()
    last_maint = start
    last_retention = start
    written = 0
    for c in range(n):
        t = start + c * interval
        if c:
            values += rng.poisson(means)
        samples = [(m, lab, v) for (m, lab), v in zip(keys, values.tolist(), strict=True)]
        written += store.write_cycle(t, [ScrapeResult("hist-0", "inst/k", start - 60, True, "", 0.01, samples)])
        if t - last_maint >= CHUNK_SECONDS:
            last_maint = t
            store.compact(t - lag)
            store.rollup(t - lag)
            if t - last_retention >= RETENTION_EVERY:
                last_retention = t
                store.retention(t, raw_seconds=DEFAULT.raw_retention_hours * 3600,
                                hour_seconds=DEFAULT.rollup_retention_days * DAY)  # fmt: skip
    end = start + n * interval
    store.compact(end)
    store.rollup(end)
    counts = store.counts()
    store.close()
    stats = dbstat(state / "registry.db")
    for kind, name in KINDS.items():
        stats[name]["row_overhead"] = page_overhead(state / "registry.db", kind)
    return {
        "hours": hours,
        "interval": interval,
        "cycles": n,
        "seconds": time.monotonic() - wall0,
        "samples_per_cycle": median_changed,
        "mean_samples_per_deployment_cycle": mean_changed,
        "written_per_cycle": written / max(1, n),
        "series": len(keys),
        "counts": counts,
        "dbstat": stats,
    }


def extrapolate(mt: dict[str, Any], hist: dict[str, Any], deployments: int, interval: float) -> dict[str, Any]:
    """Steady-state bytes for ``deployments`` with the default retention, from the blocks measured in the
    history database (chunks and hourly blocks as compaction, rollups and retention left them, each row with
    its share of the B-tree pages) and the frames of the measured cycles."""
    s = hist["dbstat"]
    scale = hist["mean_samples_per_deployment_cycle"] / max(1e-9, hist["samples_per_cycle"])
    # Raw: chunks (keyframes included: they are stored) per deployment-day, at the mean traffic.
    chunk_bytes = kind_bytes(s, "chunks", s["chunks"]["row_overhead"])
    chunk_samples = s["chunks"]["samples"]
    raw_bps = chunk_bytes / max(1, chunk_samples)
    chunk_span = max(1.0, s["chunks"]["t1"] - s["chunks"]["t0"])
    raw_samples_per_day = chunk_samples / chunk_span * DAY * scale
    raw_per_day = raw_samples_per_day * raw_bps
    # Hourly rollups: one block per deployment and hour.
    hourly_hours = max(1.0, round((s["hourly"]["t1"] - s["hourly"]["t0"]) / 3600))
    hourly_bytes = kind_bytes(s, "hourly", s["hourly"]["row_overhead"])
    hourly_per_day = hourly_bytes / hourly_hours * 24 * scale
    # Frames not compacted yet: every cycle's since the last ten-minute boundary, plus the cycles until the
    # maintenance tick that compacts them (the lag behind the scrapes + one tick), at the production interval.
    frame = mt["frames"]
    every = DEFAULT.scrape_interval_seconds
    head_cycles = math.ceil((CHUNK_SECONDS + every + DEFAULT.timeout_seconds + 1 + MAINTENANCE_EVERY) / every)
    frames_head = frame["bytes_per_deployment_cycle"] * head_cycles * deployments
    series_bytes = table_bytes(mt["dbstat"], "monitor_series") * deployments / max(1, mt["targets"])
    keep_raw = (DEFAULT.raw_retention_hours * 3600 + CHUNK_SECONDS) / DAY  # a chunk is deleted once wholly past
    keep_hour = DEFAULT.rollup_retention_days
    parts = {
        "raw": deployments * raw_per_day * keep_raw,
        "frames_head": frames_head,
        "hourly": deployments * hourly_per_day * keep_hour,
        "series": series_bytes,
    }
    return {
        # Per row beyond its data: the history table as it is (few rows), and each kind with many rows.
        "row_overhead_history": row_overhead(s),
        "row_overhead": {k: s[k]["row_overhead"] for k in ("chunks", "hourly")} | {"frames": frame["row_overhead"]},
        "raw_bytes_per_sample": raw_bps,
        "raw_samples_per_deployment_day": raw_samples_per_day,
        "written_samples_per_deployment_day": mt["samples_per_cycle"] / deployments * DAY / every,
        "raw_per_deployment_day": raw_per_day,
        "hourly_blocks_per_deployment_day": s["hourly"]["rows"] / hourly_hours * 24,
        "hourly_bytes_per_block": hourly_bytes / max(1, s["hourly"]["rows"]),
        "hourly_per_deployment_day": hourly_per_day,
        "frame_bytes_per_deployment_cycle": frame["bytes_per_deployment_cycle"],
        "frame_bytes_per_sample": frame["bytes_per_sample"],
        "head_cycles": head_cycles,
        "keep_raw_days": keep_raw,
        "parts": parts,
        "total_30d": sum(parts.values()),
        "hourly_only_30d": parts["hourly"] + parts["series"],
    }


# -- Prometheus --------------------------------------------------------------------------------------------
def prom_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return sum(float(v) for v in found) if found else math.nan


def prom_query(port: int, expr: str) -> float:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=30) as resp:
        data = json.load(resp)["data"]["result"]
    return float(data[0]["value"][1]) if data else math.nan


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_side(ports: list[int], base: Path, args: argparse.Namespace, sim: Endpoints) -> dict[str, Any]:
    exe = shutil.which("prometheus")
    if exe is None:
        return {"skipped": "no prometheus binary on PATH (apt-get install prometheus)"}
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    base.mkdir(parents=True, exist_ok=True)
    tsdb = base / "tsdb"
    web = free_port()
    timeout = min(DEFAULT.scrape_timeout_seconds, args.interval)
    keep = "" if args.prometheus_all else (
        "    metric_relabel_configs:\n      - source_labels: [__name__]\n        action: keep\n"
        f"        regex: '{'|'.join(sorted(k for k in KEPT if k != 'up'))}'\n"
    )  # fmt: skip
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
    (base / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {round(args.interval * 1000)}ms\n  scrape_timeout: {round(timeout * 1000)}ms\n"
        f"scrape_configs:\n  - job_name: sim\n{keep}    static_configs:\n      - targets: [{targets}]\n"
    )
    log = open(base / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [exe, f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={tsdb}",
         f"--web.listen-address=127.0.0.1:{web}", "--web.enable-admin-api", "--storage.tsdb.retention.time=30d"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        ps = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                log.flush()
                tail = (base / "prometheus.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"prometheus did not become ready:\n{tail}")
            time.sleep(0.1)
        cpu0, sim0, disk0, t0 = cpu_of(ps), cpu_of(sim.ps), disk_usage(tsdb), time.monotonic()
        appended0 = prom_metric(web, "prometheus_tsdb_head_samples_appended_total")
        growth = []
        for k in range(args.cycles):
            time.sleep(max(0.0, t0 + (k + 1) * args.interval - time.monotonic()))
            growth.append(disk_usage(tsdb) - disk0)
            print(f"  prometheus after {k + 1} interval(s): TSDB +{human(growth[-1])}", flush=True)
        elapsed = time.monotonic() - t0
        cpu = cpu_of(ps) - cpu0
        sim_cpu = cpu_of(sim.ps) - sim0
        appended = prom_metric(web, "prometheus_tsdb_head_samples_appended_total") - appended0
        if math.isnan(appended):  # not exposed before the first append: count the scraped samples instead
            w = math.ceil(elapsed) + 1
            appended = prom_query(web, f"sum(count_over_time(up[{w}s])) * 5 + "
                                       f"sum(sum_over_time(scrape_samples_post_metric_relabeling[{w}s]))")  # fmt: skip
        series = prom_metric(web, "prometheus_tsdb_head_series")
        rss = ps.memory_info().rss
        disk1 = disk_usage(tsdb)
        snap_bytes = math.nan
        with contextlib.suppress(OSError, ValueError, KeyError):
            req = urllib.request.Request(f"http://127.0.0.1:{web}/api/v1/admin/tsdb/snapshot", method="POST")
            with urllib.request.urlopen(req, timeout=60) as resp:
                name = json.load(resp)["data"]["name"]
            snap_bytes = disk_usage(tsdb / "snapshots" / name)
        return {
            "version": version,
            "keep": "all" if args.prometheus_all else "same names as modeltui",
            "window_s": elapsed,
            "cpu_s": cpu,
            "cpu_share": cpu / elapsed,
            "cpu_per_cycle_s": cpu / args.cycles,
            "sim_cpu_share": sim_cpu / elapsed,
            "rss_bytes": rss,
            "samples_appended": appended,
            "samples_per_cycle": appended / args.cycles,
            "head_series": series,
            "tsdb_growth": disk1 - disk0,
            "growth_per_cycle": (disk1 - disk0) / args.cycles,
            "growth_by_interval": growth,
            "snapshot_bytes": snap_bytes,
            "snapshot_bytes_per_sample": snap_bytes / appended if appended else math.nan,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- report ------------------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def table(res: dict[str, Any], args: argparse.Namespace) -> str:
    mt, ex, pr = res["modeltui"], res["extrapolation"], res.get("prometheus") or {}
    n = args.targets
    has_p = "cpu_s" in pr
    per_day = DAY / DEFAULT.scrape_interval_seconds  # production cadence, whatever --interval was

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.1f}×" if has_p and b else "—"

    walls = [c["seconds"] for c in mt["cycles"]][1:]  # steady cycles 2..N (the first creates every series)
    cpus = mt["cpu_per_cycle"][1:]
    first, rs = mt["cycles"][0], mt["restart_cycle"]
    k = len(mt["cycles"])
    raw_h, hour_d = DEFAULT.raw_retention_hours, DEFAULT.rollup_retention_days
    mt_day = mt["growth_per_cycle"] * per_day / n
    pr_day = pr.get("growth_per_cycle", math.nan) * per_day / n
    rows = [
        (f"full cycle, wall (max / median), steady cycles 2–{k}",
         f"{max(walls):.2f} s / {statistics.median(walls):.2f} s", "—", "—", "≤ 2 s", verdict(max(walls) <= 2.0)),
        ("first cycle, cold (every series new) / after a restart (every series reloaded): wall, CPU",
         f"{first['seconds']:.2f} s, {first['cpu']:.2f} s CPU / {rs['seconds']:.2f} s, {rs['cpu']:.2f} s CPU",
         "—", "—", "—", "reported"),
        (f"CPU per steady cycle (max / median, cycles 2–{k})", f"{max(cpus):.2f} s / {statistics.median(cpus):.2f} s",
         "—", "—", "—", "—"),
        (f"CPU, share of one core, steady (cycles 2–{k} + maintenance)", f"{mt['steady_cpu_share']:.1%}", "—", "—",
         "≤ 10%", verdict(mt["steady_cpu_share"] <= 0.10)),
        ("CPU, share of one core, whole window incl. the cold first cycle", f"{mt['cpu_share']:.1%}",
         f"{pr['cpu_share']:.1%}" if has_p else "—", ratio(mt["cpu_share"], pr.get("cpu_share", 0)), "≤ 10%",
         verdict(mt["cpu_share"] <= 0.10)),
        ("CPU per cycle (whole window's CPU ÷ cycles)", f"{mt['cpu_per_cycle_s']:.2f} s",
         f"{pr['cpu_per_cycle_s']:.3f} s" if has_p else "—", ratio(mt["cpu_per_cycle_s"], pr.get("cpu_per_cycle_s", 0)),
         "—", "—"),
        ("samples written per cycle (first / steady)",
         f"{mt['samples_first_cycle']:,} / {mt['samples_per_cycle']:,.0f}",
         f"{pr['samples_per_cycle']:,.0f} appended" if has_p else "—", "—", "—", "—"),
        ("storage growth per cycle (measured on disk: frames, not compacted yet)", human(mt["growth_per_cycle"]),
         human(pr["growth_per_cycle"]) + " (WAL + head)" if has_p else "—",
         ratio(mt["growth_per_cycle"], pr.get("growth_per_cycle", 0)), "—", "—"),
        ("storage per deployment-day, as frames (growth × 5,760 cycles ÷ deployments)", human(mt_day),
         human(pr_day) if has_p else "—", ratio(mt_day, pr_day), "reported", "—"),
        ("storage per deployment-day, raw chunks (history bytes/sample × samples)",
         human(ex["raw_per_deployment_day"]), "—", "—", "reported", "—"),
        ("storage per deployment-day, hourly rollups", human(ex["hourly_per_deployment_day"]), "—", "—",
         "reported", "—"),
        (f"30 days × {n:,} deployments, default retention ({raw_h:g} h raw, {hour_d:g} d hourly)",
         human(ex["total_30d"]), "—", "—", "< 1 GiB", verdict(ex["total_30d"] < GIB)),
        (f"  of which frames not compacted yet (≤ {ex['head_cycles']} cycles)", human(ex["parts"]["frames_head"]),
         "—", "—", "—", "—"),
        (f"  of which {hour_d:g} d of hourly rollups + series", human(ex["hourly_only_30d"]), "—", "—", "—",
         verdict(ex["hourly_only_30d"] < GIB)),
        ("RSS at the end", human(mt["rss_bytes"]), human(pr["rss_bytes"]) if has_p else "—",
         ratio(mt["rss_bytes"], pr.get("rss_bytes", 0)), "—", "—"),
    ]  # fmt: skip
    out = ["| figure | modeltui | Prometheus | modeltui ÷ Prometheus | target | result |", "|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


EARLIER_INTRO = "Tables of earlier runs, newest first, as each run wrote them (run.py moves the last one here)."


def earlier_runs(path: Path) -> str:
    try:
        old = path.read_text()
    except OSError:
        return ""
    current, _, earlier = old.partition("\n## Earlier runs\n")
    lines = current.splitlines()
    measured = next((ln for ln in lines if ln.startswith("Measured ")), None)
    start = next((i for i, ln in enumerate(lines) if ln.startswith("|")), None)
    parts = []
    if measured and start is not None:
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        parts.append(f"### {measured.removeprefix('Measured ').rstrip('.')}\n\n" + "\n".join(lines[start:end]))
    earlier = earlier.replace(EARLIER_INTRO, "").strip()
    if earlier:
        parts.append(earlier)
    return "\n\n".join(parts)


def write_results(path: Path, res: dict[str, Any], md: str, args: argparse.Namespace, cmd: str) -> None:
    mt, hist, ex, pr = res["modeltui"], res["history"], res["extrapolation"], res.get("prometheus") or {}
    walls = ", ".join(f"{c['seconds']:.2f}" for c in mt["cycles"])
    cpus = ", ".join(f"{c:.2f}" for c in mt["cpu_per_cycle"])
    rs = mt["restart_cycle"]
    maint = "; ".join(
        f"at +{m['at']:.0f} s: {m['seconds']:.2f} s wall, {m['cpu']:.2f} s CPU" for m in mt["maintenance"]
    ) or "none fell inside the window"  # fmt: skip
    st = mt["dbstat"]
    earlier = earlier_runs(path)
    prom = (
        f"- Prometheus: {pr['version']}, `--storage.tsdb.retention.time=30d`, one job with the {args.targets:,} "
        f"targets, `scrape_interval` {args.interval:g} s, `scrape_timeout` {min(2.0, args.interval):g} s, keeping "
        f"{pr['keep']} (`metric_relabel_configs` keep on `__name__`; Prometheus adds its 5 `scrape_*`/`up` series "
        f"per target). Measured from ready for {args.cycles} intervals ({pr['window_s']:.1f} s): CPU of its "
        f"process from `/proc`, samples appended ({pr['samples_appended']:,.0f}; head series "
        f"{pr['head_series']:,.0f}) from its own `/metrics`, disk growth of the TSDB directory (`du`: WAL + head "
        f"chunks; Prometheus compacts into blocks every 2 h, so no block exists yet) after each interval: "
        f"{', '.join(human(g) for g in pr['growth_by_interval'])}. A snapshot through the admin API writes the "
        f"head as a compressed block: {human(pr['snapshot_bytes'])}, {pr['snapshot_bytes_per_sample']:.2f} bytes "
        f"per sample (with only {args.cycles} samples per series its chunks compress worse than a 2-hour block's "
        f"~120 per chunk). Simulator CPU while Prometheus scraped: {pr['sim_cpu_share']:.1%} of a core. RSS "
        f"{human(pr['rss_bytes'])}."
        if "cpu_s" in pr else f"- Prometheus: not run ({pr.get('skipped', '--skip-prometheus')})."
    )  # fmt: skip
    text = f"""# bench/monitoring — results

Measured {res['date']} by `{cmd}`.

- Machine: {res['machine']}. Everything (the simulated endpoints, the monitor, Prometheus) shares it; the
  simulator is its own process and its CPU is counted for neither side. 1-minute load average when the run
  began: {res['load_begin']:.2f}, when it ended: {res['load_end']:.2f}.
- Targets: {args.targets:,} listeners on 127.0.0.1 in one asyncio process (`bench/monitoring/endpoints.py`),
  each a simulated runtime rendering the real exposition (`daemon/serving/metrics.py` `Metrics.render` +
  `drift.FeatureHistograms`) on every scrape: {args.features} features, {args.classes} classes, ~385 lines /
  24 KiB per scrape, of which {mt['kept_series_per_target']:.0f} are samples the monitor keeps; counters advance
  with the traffic of the time since the previous scrape (1–40 req/s per deployment, errors, health checks,
  feedback for 10 % of predictions, every tenth deployment drifting). Simulator CPU during the modeltui window:
  {mt['sim_cpu_share']:.1%} of a core.
- modeltui: the daemon's own `Monitor.scrape_cycle` (`daemon/monitor/`: `scrape_all` with concurrency
  {args.concurrency}, timeout {min(2.0, args.interval):g} s, the strict fast parser in `expo.py`, one
  `MonitorStore.write_cycle` transaction) in the benchmark's process, over a fresh SQLite state directory,
  every {args.interval:g} s for {args.cycles} cycles; `Monitor.maintain` on the scheduler's cadence ({maint};
  the first pass also runs retention, on a still empty database). One `retention` pass over the database after
  the window (the daemon runs it every 10 min): {mt['retention']['seconds']:.2f} s wall,
  {mt['retention']['cpu']:.2f} s CPU.
  CPU is `getrusage(RUSAGE_SELF)`, all threads (the store writes in a worker thread), reported two ways. The
  first cycle is a cold start: every series of {args.targets:,} never-seen deployments is created, which the
  daemon pays once per deployment, not every cycle; so the cycle-time verdict is on cycles 2–{args.cycles}, and
  "steady" CPU is everything the process did from the start of cycle 2 to the end of the window (cycles
  2–{args.cycles} and the maintenance runs in that span, {mt['steady_window_s']:.1f} s) ÷ that span:
  {mt['steady_cpu_share']:.1%} of a core. The whole-window figure, cold first cycle included, is the CPU over
  the {mt['window_s']:.1f} s window ÷ the window: {mt['cpu_share']:.1%}; it gets its own verdict against 10 %
  too, though it falls as the window grows (the cold cycle amortised over more cycles). Cycle wall times:
  {walls} s; CPU per cycle (measured around each `scrape_cycle`; a maintenance run overlapping a cycle would
  count in it): {cpus} s. A restarted daemon's first cycle: after the window, a new `MonitorStore` on the same
  state directory (opened in {rs['open_seconds']:.2f} s) and a new `Monitor` over the same, still served
  targets, whose first `scrape_cycle` reloads every deployment's series and last values:
  {rs['seconds']:.2f} s wall, {rs['cpu']:.2f} s CPU, {rs['samples']:,} samples written. Database growth per
  cycle = (file size after the last cycle − after the first), both after a WAL checkpoint, ÷ {args.cycles - 1}:
  the first cycle writes every series (and their explicit zeros).
  Storage: each cycle writes one frame per deployment that changed (one `monitor_blocks` row: its changed
  samples as series ids + float64 values, zlib level 1); `Monitor.maintain` compacts each deployment's frames
  into a 10-minute chunk (a keyframe of every series' last value, then its samples sorted by series and time:
  delta-coded ids, times and whole-number values, byte-shuffled, zlib), and rolls complete hours up into one
  block per deployment and hour (each counter's increase). After the run: {st['monitor_series']['rows']:,}
  series; {st['frames']['rows']:,} frames holding {st['frames']['samples']:,} samples
  ({st['frames']['data'] / max(1, st['frames']['samples']):.2f} bytes of data each; a steady cycle's frames
  {ex['frame_bytes_per_sample']:.2f} bytes per sample with their rows),
  {st['chunks']['rows']:,} chunks; database {human(st['file']['bytes'])}.
- History, cheaply (`--history-hours {hist['hours']:g}`): one deployment (the real one nearest the median of
  samples per cycle, {hist['samples_per_cycle']} changed series per cycle; the mean is
  {hist['mean_samples_per_deployment_cycle']:.0f}) replayed through the store's own `write_cycle` every 15 s of
  a fake clock for {hist['cycles']:,} cycles, each counter advancing by a Poisson number per cycle (fixed seed)
  with the mean of its measured increase ({hist['written_per_cycle']:.0f} samples written per cycle);
  `compact` and `rollup` every simulated 10 min and `retention` with the defaults ({hist['seconds']:.0f} s of
  wall time). From that database ({hist['dbstat']['chunks']['rows']:,} chunks, {hist['dbstat']['hourly']['rows']:,}
  hourly blocks, whose `data` is {human(hist['dbstat']['chunks']['data'])} and
  {human(hist['dbstat']['hourly']['data'])}; each row also costs pages beyond its data, measured with SQLite's
  `dbstat` on the table and its index holding the blocks of that kind again under enough deployment names to
  make 5,000 rows, − the data, ÷ rows: {ex['row_overhead']['chunks']:.0f} bytes per chunk,
  {ex['row_overhead']['hourly']:.0f} per hourly block, {ex['row_overhead']['frames']:.0f} per frame; the
  history's own few dozen rows give {ex['row_overhead_history']:.0f} bytes per row, mostly half-empty pages):
  {ex['raw_bytes_per_sample']:.2f} bytes per raw sample
  in chunks (keyframes counted as samples: they are stored), {ex['hourly_bytes_per_block']:,.0f} bytes per
  hourly block; per deployment-day at the mean traffic: {ex['raw_samples_per_deployment_day']:,.0f} samples in
  chunks ({ex['written_samples_per_deployment_day']:,.0f} written), {human(ex['raw_per_deployment_day'])} raw
  and {human(ex['hourly_per_deployment_day'])} of hourly blocks. The 30-day figure is {args.targets:,} ×
  ({DEFAULT.raw_retention_hours:g} h + one 10-minute chunk of raw chunks + {DEFAULT.rollup_retention_days:g}
  days of hourly blocks) + the frames not compacted yet ({ex['head_cycles']} cycles at
  {DEFAULT.scrape_interval_seconds:g} s: ten minutes, the lag and a maintenance tick; measured frames
  {human(ex['frame_bytes_per_deployment_cycle'])} per deployment and cycle) + the series table: raw
  {human(ex['parts']['raw'])}, frames {human(ex['parts']['frames_head'])}, hourly
  {human(ex['parts']['hourly'])}, series {human(ex['parts']['series'])}. Nothing was inserted to fake 30
  days: it is samples and blocks × measured bytes.
{prom}

{md}

Targets are the issue's (a full cycle ≤ 2 s; ≤ 10 % of one core on average; 30 days of 1,000 deployments
under 1 GiB with rollups). Ratios are modeltui ÷ Prometheus. Prometheus's storage rows compare on-disk growth
the same way (directory growth per cycle); its long-term form is the compacted block (snapshot figure).

## Reproduce

```sh
.venv/bin/python bench/monitoring/run.py                               # 1,000 targets, 6 cycles of 15 s
.venv/bin/python bench/monitoring/run.py --targets 200 --interval 3 --cycles 4 --history-hours 2   # quick look
```
"""  # fmt: skip
    if earlier:
        text += f"\n## Earlier runs\n\n{EARLIER_INTRO}\n\n{earlier}\n"
    path.write_text(text)


def machine() -> str:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / GIB
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem:.1f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--cycles", type=int, default=6)
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--concurrency", type=int, default=DEFAULT.scrape_concurrency)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--history-hours", type=float, default=26.0)
    ap.add_argument("--skip-prometheus", action="store_true")
    ap.add_argument("--prometheus-all", action="store_true", help="Prometheus keeps every sample, not modeltui's names")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if args.cycles < 2:
        ap.error("--cycles must be at least 2")
    cmd = "bench/monitoring/run.py" + "".join(f" {a}" for a in sys.argv[1:])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.concurrency + 1024)), hard))
    res: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                           "load_begin": os.getloadavg()[0]}  # fmt: skip
    base = Path(tempfile.mkdtemp(prefix="bench-monitoring-", dir=args.workdir))
    sim = None
    try:
        print(f"starting {args.targets:,} simulated endpoints …", flush=True)
        sim = Endpoints(args.targets, args.features, args.classes)
        print(f"modeltui: {args.cycles} cycles every {args.interval:g} s", flush=True)
        mt = asyncio.run(modeltui_side(sim.ports, base / "state", args, sim))
        captured = mt.pop("captured")
        res["modeltui"] = mt
        print(f"history: {args.history_hours:g} simulated hours of one deployment …", flush=True)
        res["history"] = history_side(captured, base / "history", args.history_hours, 15.0)
        res["extrapolation"] = extrapolate(mt, res["history"], args.targets, args.interval)
        if not args.skip_prometheus:
            print(f"prometheus: {args.cycles} intervals of {args.interval:g} s", flush=True)
            res["prometheus"] = prometheus_side(sim.ports, base / "prometheus", args, sim)
        else:
            res["prometheus"] = {"skipped": "--skip-prometheus"}
    finally:
        if sim is not None:
            sim.stop()
        shutil.rmtree(base, ignore_errors=True)
    res["load_end"] = os.getloadavg()[0]
    md = table(res, args)
    print()
    print(md)
    write_results(args.results, res, md, args, cmd)
    print(f"\nwrote {args.results}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
