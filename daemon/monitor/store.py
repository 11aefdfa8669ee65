"""Samples, rollups and target state in the registry database (tables from migration v5), in plain SQL.

Every method blocks: call them through ``asyncio.to_thread``. One scrape cycle is one transaction.

- A series (deployment, metric, labels) gets an id once; samples are (series, t, value), stored only when
  the value changed since the series' previous sample, so an idle deployment costs nothing.
- Counter resets are explicit: when a deployment's instance changes, every counter of it gets a 0 sample
  just before the new instance's first one; a counter that appears for the first time gets a 0 sample at
  the instance's start (or at its previous scrape). Derivation then never needs to guess.
- Rollups: 1-minute rows (a counter's increase over the minute), 1-hour rows from the minute rows. An
  increase belongs to the minute ``(m, m + 60]`` holding its later sample (like a window's raw tail). The
  writer adds each increase it stores to its minute in memory and ``rollup`` writes the completed minutes;
  minutes it has not seen whole (before this process's first cycle) are computed from raw samples. Gauges
  are not rolled up: their last raw sample is always kept.
- Retention deletes raw samples older than the raw retention except each series' last one (the base of the
  next increase), and rollups past theirs.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.store.db import Db, chunked, marks
from daemon.store.engine import make_engine
from daemon.store.migrations import migrate

from .derive import COUNTERS, GAUGES, UP, Key, Labels, Point, WindowData

MINUTE = 60
HOUR = 3600
#: Offset of the explicit zero before a new instance's first sample (keeps (series, t) unique and ordered).
EPS = 1e-3


@dataclass
class ScrapeResult:
    """One target in one cycle."""

    deployment: str
    instance: str | None
    started_at: float | None
    up: bool
    error: str = ""
    duration: float = 0.0
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)


@dataclass
class TargetState:
    deployment: str
    instance: str | None
    started_at: float | None
    up: bool
    last_scrape: float
    last_success: float | None
    error: str
    duration: float


@dataclass
class _Deployment:
    """What the writer remembers of one deployment (loaded from the database on first use)."""

    series: dict[tuple[str, Labels], int] = field(default_factory=dict)  # (metric, labels as parsed) → id
    by_json: dict[tuple[str, str], int] = field(default_factory=dict)  # (metric, labels JSON) → id
    metric_of: dict[int, str] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)  # id → last stored value
    target: TargetState | None = None


def _minute(t: float) -> float:
    """The start of the minute ``(m, m + 60]`` holding ``t``."""
    return float(math.ceil(t / MINUTE) * MINUTE - MINUTE)


_json_cache: dict[Labels, str] = {}  # deployments of one model share their label sets


def labels_json(labels: Labels) -> str:
    text = _json_cache.get(labels)
    if text is None:
        text = json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))
        if len(_json_cache) < 100_000:
            _json_cache[labels] = text
    return text


def _labels(text: str) -> Labels:
    data: dict[str, Any] = json.loads(text)
    return tuple(sorted((str(k), str(v)) for k, v in data.items()))


class MonitorStore:
    def __init__(self, state_dir: Path, *, busy_timeout_s: float = 5.0) -> None:
        self._engine = make_engine(Path(state_dir), busy_timeout_s=busy_timeout_s)
        migrate(self._engine)  # a no-op once the registry has migrated
        self._db = Db(self._engine)
        self._lock = threading.Lock()
        self._deployments: dict[str, _Deployment] = {}
        self._rolled: dict[int, float] = {}  # resolution → rolled up to (exclusive)
        self._minutes: dict[float, dict[int, float]] = {}  # minute start → series id → counter increase
        self._minutes_from: float | None = None  # first minute the writer has seen whole
        self._next_id: int | None = None  # the next series id, within a cycle's transaction
        self._new_series: list[tuple[int, str, str, str]] = []  # series of this cycle, inserted at its end

    def close(self) -> None:
        self._db.close()
        self._engine.dispose()

    # -- writing ---------------------------------------------------------------------------------------------

    def _load(self, conn: sqlite3.Connection, name: str) -> _Deployment:
        dep = self._deployments.get(name)
        if dep is not None:
            return dep
        dep = self._deployments[name] = _Deployment()
        rows = conn.execute(
            "SELECT s.id, s.metric, s.labels, (SELECT value FROM monitor_samples m WHERE m.series_id = s.id "
            "ORDER BY m.t DESC LIMIT 1) FROM monitor_series s WHERE s.deployment = ?",
            (name,),
        )
        for sid, metric, labels, last in rows:
            dep.by_json[(metric, labels)] = sid
            dep.series[(metric, _labels(labels))] = sid
            dep.metric_of[sid] = metric
            if last is not None:
                dep.last[sid] = last
        row = conn.execute(
            "SELECT deployment, instance, started_at, up, last_scrape, last_success, error, duration "
            "FROM monitor_targets WHERE deployment = ?",
            (name,),
        ).fetchone()
        if row is not None:
            dep.target = TargetState(row[0], row[1], row[2], bool(row[3]), *row[4:])
        return dep

    def _series_id(self, conn: sqlite3.Connection, dep: _Deployment, name: str, metric: str, labels: Labels) -> int:
        """The series' id, by the labels as scraped; their JSON is made only for a series not seen yet (the
        JSON, sorted by name, stays the identity: labels in another order map to the same series). A new
        series gets the next id now and is inserted with the cycle's others (one statement, in the cycle's
        transaction, which holds the write lock)."""
        sid = dep.series.get((metric, labels))
        if sid is None:
            text = labels_json(labels)
            sid = dep.by_json.get((metric, text))
            if sid is None:
                if self._next_id is None:
                    self._next_id = (
                        int(conn.execute("SELECT coalesce(max(id), 0) FROM monitor_series").fetchone()[0]) + 1
                    )
                sid, self._next_id = self._next_id, self._next_id + 1
                self._new_series.append((sid, name, metric, text))
                dep.by_json[(metric, text)] = sid
                dep.metric_of[sid] = metric
            dep.series[(metric, labels)] = sid
        return sid

    def write_cycle(self, t: float, results: Sequence[ScrapeResult]) -> int:
        """Store one cycle (one transaction); returns how many samples were written."""
        written: list[tuple[int, float, float]] = []
        increases: dict[int, float] = {}
        with self._lock:
            self._next_id = None
            self._new_series = []
            try:
                with self._db.write() as conn:
                    self._write_cycle(conn, t, results, written, increases)
            except BaseException:
                self._deployments.clear()  # ids and last values of an undone cycle: re-read them
                raise
            # Committed: the cycle's counter increases count in its minute.
            minute = _minute(t)
            if self._minutes_from is None:
                self._minutes_from = minute + MINUTE  # earlier samples of this minute may predate this process
            if increases and minute >= self._minutes_from:
                bucket = self._minutes.setdefault(minute, {})
                for sid, inc in increases.items():
                    bucket[sid] = bucket.get(sid, 0.0) + inc
        return len(written)

    def _write_cycle(
        self,
        conn: sqlite3.Connection,
        t: float,
        results: Sequence[ScrapeResult],
        written: list[tuple[int, float, float]],
        increases: dict[int, float],
    ) -> None:
        for res in results:
            dep = self._load(conn, res.deployment)
            prev = dep.target
            if res.up:
                self._write_target(conn, dep, res, t, written, increases)
            up_sid = self._series_id(conn, dep, res.deployment, UP, ())
            if dep.last.get(up_sid) != float(res.up):
                written.append((up_sid, t, float(res.up)))
                dep.last[up_sid] = float(res.up)
            keep_instance = prev is not None and not res.up
            state = TargetState(
                deployment=res.deployment,
                instance=prev.instance if keep_instance and prev else res.instance,
                started_at=prev.started_at if keep_instance and prev else res.started_at,
                up=res.up,
                last_scrape=t,
                last_success=t if res.up else (prev.last_success if prev else None),
                error=res.error[:500],
                duration=res.duration,
            )
            dep.target = state
            conn.execute(
                "INSERT OR REPLACE INTO monitor_targets (deployment, instance, started_at, up, last_scrape, "
                "last_success, error, duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (state.deployment, state.instance, state.started_at, int(state.up), state.last_scrape,
                 state.last_success, state.error, state.duration),
            )  # fmt: skip
        conn.executemany("INSERT INTO monitor_series (id, deployment, metric, labels) VALUES (?, ?, ?, ?)",
                         self._new_series)  # fmt: skip
        conn.executemany("INSERT OR REPLACE INTO monitor_samples (series_id, t, value) VALUES (?, ?, ?)", written)

    def _write_target(
        self,
        conn: sqlite3.Connection,
        dep: _Deployment,
        res: ScrapeResult,
        t: float,
        out: list[tuple[int, float, float]],
        increases: dict[int, float],
    ) -> None:
        prev = dep.target
        new_instance = prev is None or prev.instance != res.instance
        if new_instance:
            # The new instance's counters started at 0: at its start, after anything stored before, before t.
            zero_t = max(res.started_at or -math.inf, (prev.last_scrape + EPS) if prev else -math.inf)
            zero_t = min(zero_t, t - EPS) if math.isfinite(zero_t) else t - EPS
            if prev is not None:  # a restart: every counter of the old instance resets
                for sid, value in dep.last.items():
                    if value and dep.metric_of.get(sid) in COUNTERS:
                        out.append((sid, zero_t, 0.0))
                        dep.last[sid] = 0.0
        else:
            assert prev is not None
            # A counter first seen now was 0 (absent) when this instance last answered.
            zero_t = min(prev.last_success if prev.last_success is not None else t - EPS, t - EPS)
        series = dep.series
        for metric, labels, value in res.samples:
            known = series.get((metric, labels))
            sid = self._series_id(conn, dep, res.deployment, metric, labels) if known is None else known
            last = dep.last.get(sid)
            if last is None and metric in COUNTERS and value:
                out.append((sid, zero_t, 0.0))
                last = 0.0
            if last != value:
                out.append((sid, t, value))
                dep.last[sid] = value
                if last is not None and metric in COUNTERS:
                    increases[sid] = value - last if value >= last else value

    def forget(self, deployment: str) -> None:
        """Drop the writer's memory of a deployment (it is re-read from the database when next scraped)."""
        with self._lock:
            self._deployments.pop(deployment, None)

    # -- rollups and retention -------------------------------------------------------------------------------

    def rollup(self, until: float) -> int:
        """Roll raw samples up into complete minutes before ``until``, and minutes into complete hours."""
        written = 0
        with self._lock, self._db.write() as conn:
            to = math.floor(until / MINUTE) * MINUTE
            start = self._progress(conn, MINUTE)
            if start is not None and to > start:
                # Minutes the writer saw whole come from memory; earlier ones (a restart) from raw samples.
                seen = to if self._minutes_from is None else max(min(self._minutes_from, to), start)
                if seen > start:
                    written += self._minute_rollups(conn, start, seen)
                rows = [
                    (sid, MINUTE, m, value)
                    for m in sorted(self._minutes)
                    if seen <= m < to
                    for sid, value in self._minutes[m].items()
                    if value
                ]
                conn.executemany(
                    "INSERT OR REPLACE INTO monitor_rollups (series_id, resolution, t, value) VALUES (?, ?, ?, ?)", rows
                )
                written += len(rows)
            for m in [m for m in self._minutes if m < to]:
                del self._minutes[m]
            self._rolled[MINUTE] = max(to, start or to)
            to_h = math.floor(self._rolled[MINUTE] / HOUR) * HOUR
            start_h = self._progress(conn, HOUR)
            if start_h is not None and to_h > start_h:
                cur = conn.execute(
                    "INSERT OR REPLACE INTO monitor_rollups (series_id, resolution, t, value) "
                    "SELECT series_id, ?, CAST(t / ? AS INTEGER) * ?, SUM(value) FROM monitor_rollups "
                    "WHERE resolution = ? AND t >= ? AND t < ? GROUP BY series_id, CAST(t / ? AS INTEGER)",
                    (HOUR, HOUR, HOUR, MINUTE, start_h, to_h, HOUR),
                )
                written += max(cur.rowcount, 0)
            self._rolled[HOUR] = max(to_h, start_h or to_h)
        return written

    def _progress(self, conn: sqlite3.Connection, resolution: int) -> float | None:
        """Where rolling up at ``resolution`` resumes: remembered, else after the newest rollup, else the
        oldest raw sample."""
        if resolution in self._rolled:
            return self._rolled[resolution]
        row = conn.execute("SELECT max(t) FROM monitor_rollups WHERE resolution = ?", (resolution,)).fetchone()
        if row[0] is not None:
            return float(row[0]) + resolution
        first = conn.execute("SELECT min(t) FROM monitor_samples").fetchone()[0]
        return None if first is None else math.floor(first / resolution) * resolution

    def _minute_rollups(self, conn: sqlite3.Connection, start: float, end: float) -> int:
        rows: list[tuple[int, int, float, float]] = []
        counters = [sid for sid, metric in conn.execute("SELECT id, metric FROM monitor_series") if metric in COUNTERS]
        for sid in counters:
            points = self._points(conn, sid, start, end)
            sums: dict[float, float] = {}
            for (_, prev), (t, v) in itertools.pairwise(points):
                if t > start:
                    m = _minute(t)
                    sums[m] = sums.get(m, 0.0) + (v - prev if v >= prev else v)
            rows.extend((sid, MINUTE, m, value) for m, value in sums.items() if value)
        conn.executemany("INSERT OR REPLACE INTO monitor_rollups (series_id, resolution, t, value) VALUES (?, ?, ?, ?)",
                         rows)  # fmt: skip
        return len(rows)

    @staticmethod
    def _points(conn: sqlite3.Connection, sid: int, start: float, end: float) -> list[Point]:
        """The series' samples in ``(start, end]``, after its last one at or before ``start`` (the base)."""
        base = conn.execute(
            "SELECT t, value FROM monitor_samples WHERE series_id = ? AND t <= ? ORDER BY t DESC LIMIT 1",
            (sid, start),
        ).fetchall()
        rows = conn.execute(
            "SELECT t, value FROM monitor_samples WHERE series_id = ? AND t > ? AND t <= ? ORDER BY t",
            (sid, start, end),
        ).fetchall()
        return [(float(t), float(v)) for t, v in base + rows]

    def retention(self, now: float, *, raw_seconds: float, minute_seconds: float, hour_seconds: float) -> int:
        """Delete what is past its retention; returns rows deleted."""
        deleted = 0
        cutoff = now - raw_seconds
        with self._lock, self._db.write() as conn:
            # One statement: for each series (CROSS JOIN keeps that loop order), a primary-key range up to its
            # last sample at or before the cutoff (its base), found by a primary-key seek.
            cur = conn.execute(
                "DELETE FROM monitor_samples WHERE (series_id, t) IN (SELECT m.series_id, m.t "
                "FROM monitor_series s CROSS JOIN monitor_samples m ON m.series_id = s.id AND m.t < "
                "(SELECT max(b.t) FROM monitor_samples b WHERE b.series_id = s.id AND b.t <= ?))",
                (cutoff,),
            )
            deleted += max(cur.rowcount, 0)
            for resolution, keep in ((MINUTE, minute_seconds), (HOUR, hour_seconds)):
                cur = conn.execute(
                    "DELETE FROM monitor_rollups WHERE resolution = ? AND t < ?", (resolution, now - keep)
                )
                deleted += max(cur.rowcount, 0)
            # Series of deployments that are gone, once nothing of theirs is left in the window.
            gone = [
                (sid, dep)
                for sid, dep, last in conn.execute(
                    "SELECT s.id, s.deployment, (SELECT max(t) FROM monitor_samples m WHERE m.series_id = s.id) "
                    "FROM monitor_series s WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.name = s.deployment)"
                )
                if last is None or last < cutoff
            ]
            for chunk in chunked([sid for sid, _ in gone]):
                conn.execute(f"DELETE FROM monitor_series WHERE id IN ({marks(len(chunk))})", tuple(chunk))
            for dep in {d for _, d in gone}:
                conn.execute("DELETE FROM monitor_targets WHERE deployment = ?", (dep,))
                self._deployments.pop(dep, None)
        return deleted

    # -- reading ---------------------------------------------------------------------------------------------

    def target(self, deployment: str) -> TargetState | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT deployment, instance, started_at, up, last_scrape, last_success, error, duration "
                "FROM monitor_targets WHERE deployment = ?",
                (deployment,),
            ).fetchone()
        return None if row is None else TargetState(row[0], row[1], row[2], bool(row[3]), *row[4:])

    def _series(self, conn: sqlite3.Connection, deployment: str) -> list[tuple[int, Key]]:
        rows = conn.execute("SELECT id, metric, labels FROM monitor_series WHERE deployment = ?", (deployment,))
        return [(sid, (metric, _labels(labels))) for sid, metric, labels in rows]

    def raw_series(self, deployment: str, start: float, end: float) -> dict[Key, list[Point]]:
        """Every series of the deployment: its samples in ``(start, end]`` after its base sample."""
        out: dict[Key, list[Point]] = {}
        with self._db.read() as conn:
            for sid, key in self._series(conn, deployment):
                if key[0] in GAUGES:
                    row = conn.execute(
                        "SELECT t, value FROM monitor_samples WHERE series_id = ? AND t <= ? ORDER BY t DESC LIMIT 1",
                        (sid, end),
                    ).fetchall()
                    points = [(float(t), float(v)) for t, v in row]
                else:
                    points = self._points(conn, sid, start, end)
                if points:
                    out[key] = points
        return out

    def rollups(self, deployment: str, resolution: int, start: float, end: float) -> dict[float, WindowData]:
        """Counter increases per rollup bucket with ``start <= t < end``."""
        out: dict[float, WindowData] = {}
        with self._db.read() as conn:
            keys = dict(self._series(conn, deployment))
            for chunk in chunked(list(keys)):
                rows = conn.execute(
                    f"SELECT series_id, t, value FROM monitor_rollups WHERE resolution = ? AND t >= ? AND t < ? "
                    f"AND series_id IN ({marks(len(chunk))})",
                    (resolution, start, end, *chunk),
                )
                for sid, t, value in rows:
                    data = out.setdefault(float(t), WindowData())
                    data.counters[keys[sid]] = data.counters.get(keys[sid], 0.0) + value
        return out

    def rolled_until(self, resolution: int) -> float | None:
        return self._rolled.get(resolution)

    def counts(self) -> dict[str, int]:
        """Rows per table (for tests and the benchmark)."""
        with self._db.read() as conn:
            tables: Iterable[str] = ("monitor_series", "monitor_samples", "monitor_rollups", "monitor_targets")
            return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}
