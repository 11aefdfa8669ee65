"""Samples, hourly rollups and target state in the registry database (tables from migration v7), in plain SQL.

Every method blocks: call them through ``asyncio.to_thread``. One scrape cycle is one transaction.

- A series (deployment, metric, labels) gets an id once; samples are (series, t, value), stored only when
  the value changed since the series' previous sample, so an idle deployment costs nothing.
- Samples live in compressed blocks (``daemon/store/blocks.py``) of one deployment: each cycle writes one
  **frame** per deployment (its changed samples); ``compact`` turns a deployment's frames into one
  **chunk** every ten minutes, which starts with a keyframe (every series' last value before it), so a
  window is read from the chunk holding its start onwards and any older chunk can be deleted.
- Counter resets are explicit: when a deployment's instance changes, every counter of it gets a 0 sample
  just before the new instance's first one; a counter that appears for the first time gets a 0 sample at
  the instance's start (or at its previous scrape). Derivation then never needs to guess.
- Rollups: one block per deployment and hour holding each counter's increase over ``(h, h + 3600]``,
  computed from the raw blocks once the hour is complete (a restarted daemon resumes where the table says).
  Gauges are not rolled up: the keyframes always carry their last value.
- Retention deletes chunks older than the raw retention (never a deployment's newest, nor one not yet rolled
  up) and hourly blocks past theirs.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daemon.store import blocks
from daemon.store.blocks import BlockError, Samples
from daemon.store.db import Db
from daemon.store.engine import make_engine
from daemon.store.migrations import migrate

from .derive import COUNTERS, GAUGES, UP, Key, Labels, Point, WindowData

log = logging.getLogger("modeltuid.monitor")

HOUR = 3600
#: Frames are compacted into a chunk per deployment at most this often.
CHUNK_SECONDS = 600
#: Offset of the explicit zero before a new instance's first sample (keeps (series, t) unique and ordered).
EPS = 1e-3
FRAME, CHUNK, HOURLY = 0, 1, 2  # monitor_blocks.kind


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


_json_cache: dict[Labels, str] = {}  # deployments of one model share their label sets


def labels_json(labels: Labels) -> str:
    text = _json_cache.get(labels)
    if text is None:
        text = json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))
        if len(_json_cache) < 100_000:
            _json_cache[labels] = text
    return text


_parsed_cache: dict[str, Labels] = {}


def _labels(text: str) -> Labels:
    """Labels from their stored JSON (cached: a restarted daemon reads the same few hundred sets for every
    deployment of a model)."""
    got = _parsed_cache.get(text)
    if got is None:
        data: dict[str, Any] = json.loads(text)
        got = tuple(sorted((str(k), str(v)) for k, v in data.items()))
        if len(_parsed_cache) < 100_000:
            _parsed_cache[text] = got
    return got


class MonitorStore:
    def __init__(self, state_dir: Path, *, busy_timeout_s: float = 5.0) -> None:
        self._engine = make_engine(Path(state_dir), busy_timeout_s=busy_timeout_s)
        migrate(self._engine)  # a no-op once the registry has migrated
        self._db = Db(self._engine)
        self._lock = threading.Lock()
        self._deployments: dict[str, _Deployment] = {}
        self._next_id: int | None = None  # the next series id, within a cycle's transaction
        self._new_series: list[tuple[int, str, str, str]] = []  # series of this cycle, inserted at its end
        self._progress_set = False  # the hourly rollups' progress row exists

    def close(self) -> None:
        self._db.close()
        self._engine.dispose()

    # -- writing ---------------------------------------------------------------------------------------------

    def _load(self, conn: sqlite3.Connection, name: str) -> _Deployment:
        dep = self._deployments.get(name)
        if dep is not None:
            return dep
        dep = self._deployments[name] = _Deployment()
        for sid, metric, labels in conn.execute(
            "SELECT id, metric, labels FROM monitor_series WHERE deployment = ?", (name,)
        ):
            dep.by_json[(metric, labels)] = sid
            dep.series[(metric, _labels(labels))] = sid
            dep.metric_of[sid] = metric
        last = blocks.last_values(self._samples(conn, name, None, math.inf))
        dep.last.update(zip(last.sid.tolist(), last.value.tolist(), strict=True))
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
        """Store one cycle (one transaction, a frame per deployment that changed); returns how many samples
        were written. Values must be finite (the scraper drops the others)."""
        with self._lock:
            self._next_id = None
            self._new_series = []
            try:
                with self._db.write() as conn:
                    return self._write_cycle(conn, t, results)
            except BaseException:
                self._deployments.clear()  # ids and last values of an undone cycle: re-read them
                self._progress_set = False
                raise

    def _write_cycle(self, conn: sqlite3.Connection, t: float, results: Sequence[ScrapeResult]) -> int:
        frames: list[tuple[str, int, float, float, int, bytes]] = []
        targets = []
        written = 0
        for res in results:
            dep = self._load(conn, res.deployment)
            prev = dep.target
            sids: list[int] = []
            values: list[float] = []
            zeros: list[int] = []
            zero_t = t - EPS
            if res.up:
                zero_t = self._write_target(conn, dep, res, t, sids, values, zeros)
            up_sid = self._series_id(conn, dep, res.deployment, UP, ())
            if dep.last.get(up_sid) != float(res.up):
                sids.append(up_sid)
                values.append(float(res.up))
                dep.last[up_sid] = float(res.up)
            if sids or zeros:
                n = len(sids) + len(zeros)
                written += n
                frames.append((res.deployment, FRAME, min(zero_t, t) if zeros else t, t, n,
                               blocks.encode_frame(t, sids, values, zero_t, zeros)))  # fmt: skip
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
            targets.append((state.deployment, state.instance, state.started_at, int(state.up), state.last_scrape,
                            state.last_success, state.error, state.duration))  # fmt: skip
        conn.executemany(
            "INSERT OR REPLACE INTO monitor_targets (deployment, instance, started_at, up, last_scrape, "
            "last_success, error, duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            targets,
        )
        conn.executemany("INSERT INTO monitor_series (id, deployment, metric, labels) VALUES (?, ?, ?, ?)",
                         self._new_series)  # fmt: skip
        conn.executemany(
            "INSERT INTO monitor_blocks (deployment, kind, t0, t1, n, data) VALUES (?, ?, ?, ?, ?, ?)", frames
        )
        if frames and not self._progress_set:
            # Hourly rollups start with the hour of the first cycle written, not with an explicit zero at an
            # instance's start (which may be days earlier: nothing was stored for the hours between).
            conn.execute(
                "INSERT OR IGNORE INTO monitor_progress (name, t) VALUES ('hourly', ?)",
                (math.ceil(t / HOUR) * HOUR - HOUR,),
            )
            self._progress_set = True
        return written

    def _write_target(
        self,
        conn: sqlite3.Connection,
        dep: _Deployment,
        res: ScrapeResult,
        t: float,
        sids: list[int],
        values: list[float],
        zeros: list[int],
    ) -> float:
        """The target's changed samples into ``sids``/``values`` and its explicit zeros into ``zeros``;
        returns the zeros' time."""
        prev = dep.target
        new_instance = prev is None or prev.instance != res.instance
        if new_instance:
            # The new instance's counters started at 0: at its start, after anything stored before, before t.
            zero_t = max(res.started_at or -math.inf, (prev.last_scrape + EPS) if prev else -math.inf)
            zero_t = min(zero_t, t - EPS) if math.isfinite(zero_t) else t - EPS
            if prev is not None:  # a restart: every counter of the old instance resets
                for sid, value in dep.last.items():
                    if value and dep.metric_of.get(sid) in COUNTERS:
                        zeros.append(sid)
                        dep.last[sid] = 0.0
        else:
            assert prev is not None
            # A counter first seen now was 0 (absent) when this instance last answered.
            zero_t = min(prev.last_success if prev.last_success is not None else t - EPS, t - EPS)
        series = dep.series
        last_of = dep.last
        for metric, labels, value in res.samples:
            if not math.isfinite(value):
                raise ValueError(f"{res.deployment}: {metric} is not a finite number")
            known = series.get((metric, labels))
            sid = self._series_id(conn, dep, res.deployment, metric, labels) if known is None else known
            last = last_of.get(sid)
            if last is None and value and metric in COUNTERS:
                zeros.append(sid)
                last = 0.0
            if last != value:
                sids.append(sid)
                values.append(value)
                last_of[sid] = value
        return zero_t

    def forget(self, deployment: str) -> None:
        """Drop the writer's memory of a deployment (it is re-read from the database when next scraped)."""
        with self._lock:
            self._deployments.pop(deployment, None)

    # -- compaction, rollups and retention -------------------------------------------------------------------

    def compact(self, until: float) -> int:
        """Turn each deployment's frames older than the last ten-minute boundary before ``until`` into one
        chunk (keyframe + samples); returns how many chunks were written. One transaction per deployment."""
        boundary = math.floor(until / CHUNK_SECONDS) * CHUNK_SECONDS
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT deployment FROM monitor_blocks WHERE kind = ? AND t1 < ?", (FRAME, boundary)
            )
            names = [n for (n,) in rows]
        written = 0
        for name in names:
            with self._lock, self._db.write() as conn:
                frames = conn.execute(
                    "SELECT id, data FROM monitor_blocks WHERE deployment = ? AND kind = ? AND t1 < ? ORDER BY t1",
                    (name, FRAME, boundary),
                ).fetchall()
                if not frames:
                    continue
                prev = conn.execute(
                    "SELECT t1, data FROM monitor_blocks WHERE deployment = ? AND kind = ? ORDER BY t0 DESC LIMIT 1",
                    (name, CHUNK),
                ).fetchone()
                parts = [self._decode(name, data) for _, data in frames]
                new = blocks.merge(parts)
                if prev is not None:
                    t0 = float(prev[0])
                    key = blocks.last_values(self._decode(name, prev[1]))
                    keyframe = Samples(key.sid, np.full(len(key), t0), key.value)
                    new = blocks.merge([keyframe, new])
                else:
                    t0 = float(new.t.min()) - 1e-6 if len(new) else boundary
                t1 = max(float(new.t.max()) if len(new) else t0, t0)
                conn.execute(
                    "INSERT INTO monitor_blocks (deployment, kind, t0, t1, n, data) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, CHUNK, t0, t1, len(new), blocks.encode_chunk(new)),
                )
                ids = [i for i, _ in frames]
                conn.execute(f"DELETE FROM monitor_blocks WHERE id IN ({','.join('?' * len(ids))})", ids)
                written += 1
        return written

    def rollup(self, until: float) -> int:
        """Write the hourly rollup block of every deployment for each complete hour before ``until`` not
        rolled up yet (one transaction per hour, with the progress); returns how many blocks were written."""
        written = 0
        to = math.floor(until / HOUR) * HOUR
        while True:
            with self._lock, self._db.write() as conn:
                hour = self._hour_progress(conn)
                if hour is None or hour + HOUR > to:
                    return written
                counters = self._counter_ids(conn)
                names = [n for (n,) in conn.execute(
                    "SELECT DISTINCT deployment FROM monitor_blocks WHERE kind IN (?, ?) AND t1 > ?",
                    (FRAME, CHUNK, hour))]  # fmt: skip
                rows = []
                for name in names:
                    inc = _increases(self._samples(conn, name, hour, hour + HOUR), hour, hour + HOUR, counters)
                    if len(inc):
                        rows.append((name, HOURLY, hour, hour + HOUR, len(inc), blocks.encode_chunk(inc)))
                conn.executemany(
                    "INSERT OR REPLACE INTO monitor_blocks (deployment, kind, t0, t1, n, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                conn.execute("INSERT OR REPLACE INTO monitor_progress (name, t) VALUES ('hourly', ?)", (hour + HOUR,))
                written += len(rows)

    @staticmethod
    def _hour_progress(conn: sqlite3.Connection) -> float | None:
        """The next hour to roll up: recorded (from the first cycle written), else the hour of the oldest raw
        block's end (None: no data yet)."""
        row = conn.execute("SELECT t FROM monitor_progress WHERE name = 'hourly'").fetchone()
        if row is not None:
            return float(row[0])
        first = conn.execute("SELECT min(t1) FROM monitor_blocks WHERE kind IN (?, ?)", (FRAME, CHUNK)).fetchone()[0]
        return None if first is None else math.ceil(first / HOUR) * HOUR - HOUR

    @staticmethod
    def _counter_ids(conn: sqlite3.Connection) -> np.ndarray[Any, np.dtype[np.int64]]:
        ids = [sid for sid, metric in conn.execute("SELECT id, metric FROM monitor_series") if metric in COUNTERS]
        return np.asarray(sorted(ids), np.int64)

    def rolled_until(self) -> float | None:
        """The end of the last hour rolled up (None: nothing yet)."""
        with self._db.read() as conn:
            row = conn.execute("SELECT t FROM monitor_progress WHERE name = 'hourly'").fetchone()
        return None if row is None else float(row[0])

    def retention(self, now: float, *, raw_seconds: float, hour_seconds: float) -> int:
        """Delete what is past its retention; returns blocks deleted."""
        deleted = 0
        with self._lock, self._db.write() as conn:
            # Raw chunks wholly before the cutoff, but never one not rolled up yet, nor a deployment's newest
            # (its keyframe and samples hold the last value of every series).
            cutoff = min(now - raw_seconds, self._hour_progress(conn) or -math.inf)
            cur = conn.execute(
                "DELETE FROM monitor_blocks WHERE kind = ? AND t1 < ? AND t0 < (SELECT max(b.t0) "
                "FROM monitor_blocks b WHERE b.deployment = monitor_blocks.deployment AND b.kind = ?)",
                (CHUNK, cutoff, CHUNK),
            )
            deleted += max(cur.rowcount, 0)
            cur = conn.execute("DELETE FROM monitor_blocks WHERE kind = ? AND t0 < ?", (HOURLY, now - hour_seconds))
            deleted += max(cur.rowcount, 0)
            # Deployments no longer in the registry, once nothing of theirs is left in the window.
            gone = [
                name
                for name, last in conn.execute(
                    "SELECT t.deployment, (SELECT max(b.t1) FROM monitor_blocks b WHERE b.deployment = t.deployment "
                    "AND b.kind IN (?, ?)) FROM monitor_targets t "
                    "WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.name = t.deployment)",
                    (FRAME, CHUNK),
                )
                if last is None or last < cutoff
            ]
            for name in gone:
                cur = conn.execute("DELETE FROM monitor_blocks WHERE deployment = ?", (name,))
                deleted += max(cur.rowcount, 0)
                conn.execute("DELETE FROM monitor_series WHERE deployment = ?", (name,))
                conn.execute("DELETE FROM monitor_targets WHERE deployment = ?", (name,))
                self._deployments.pop(name, None)
        return deleted

    # -- reading ---------------------------------------------------------------------------------------------

    @staticmethod
    def _decode(name: str, data: bytes) -> Samples:
        try:
            return blocks.decode(data)
        except BlockError as exc:
            log.warning("%s: skipping a damaged monitoring block: %s", name, exc)
            return blocks.EMPTY

    def _samples(self, conn: sqlite3.Connection, name: str, start: float | None, end: float) -> Samples:
        """The deployment's samples at or before ``end``, from the chunk whose keyframe is at or before
        ``start`` (None: from the newest chunk) onwards, sorted by (series, time)."""
        if start is None:
            since = conn.execute(
                "SELECT max(t0) FROM monitor_blocks WHERE deployment = ? AND kind = ?", (name, CHUNK)
            ).fetchone()[0]
        else:
            since = conn.execute(
                "SELECT max(t0) FROM monitor_blocks WHERE deployment = ? AND kind = ? AND t0 <= ?",
                (name, CHUNK, start),
            ).fetchone()[0]
        rows = conn.execute(
            "SELECT data FROM monitor_blocks WHERE deployment = ? AND ((kind = ? AND t0 >= ?) OR kind = ?) "
            "AND t0 <= ? ORDER BY kind DESC, t0",
            (name, CHUNK, -math.inf if since is None else since, FRAME, end),
        )
        merged = blocks.merge([self._decode(name, data) for (data,) in rows])
        if len(merged) and float(merged.t.max()) > end:
            keep = merged.t <= end
            merged = Samples(merged.sid[keep], merged.t[keep], merged.value[keep])
        return merged

    def target(self, deployment: str) -> TargetState | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT deployment, instance, started_at, up, last_scrape, last_success, error, duration "
                "FROM monitor_targets WHERE deployment = ?",
                (deployment,),
            ).fetchone()
        return None if row is None else TargetState(row[0], row[1], row[2], bool(row[3]), *row[4:])

    def _series(self, conn: sqlite3.Connection, deployment: str) -> dict[int, Key]:
        rows = conn.execute("SELECT id, metric, labels FROM monitor_series WHERE deployment = ?", (deployment,))
        return {sid: (metric, _labels(labels)) for sid, metric, labels in rows}

    def raw_series(self, deployment: str, start: float, end: float) -> dict[Key, list[Point]]:
        """Every series of the deployment: a counter's samples in ``(start, end]`` after its base (its last
        sample at or before ``start``); a gauge's last sample at or before ``end``."""
        out: dict[Key, list[Point]] = {}
        with self._db.read() as conn:
            keys = self._series(conn, deployment)
            s = self._samples(conn, deployment, start, end)
        if not len(s):
            return out
        # A sample is kept when it is in the window, or the last at or before ``start`` of its series.
        nxt_sid = np.concatenate([s.sid[1:], [-1]])
        nxt_t = np.concatenate([s.t[1:], [math.inf]])
        base = (s.t <= start) & ((nxt_sid != s.sid) | (nxt_t > start))
        last = nxt_sid != s.sid
        keep = (s.t > start) | base
        for sid, t, v, k, is_last in zip(s.sid.tolist(), s.t.tolist(), s.value.tolist(), keep.tolist(),
                                         last.tolist(), strict=True):  # fmt: skip
            key = keys.get(sid)
            if key is None:
                continue
            if key[0] in GAUGES:
                if is_last:
                    out[key] = [(t, v)]
            elif k:
                out.setdefault(key, []).append((t, v))
        return out

    def window(self, deployment: str, start: float, end: float) -> WindowData:
        """The window's counter increases and gauges' last values in one pass over the columns (what
        :func:`~daemon.monitor.derive.window_data` makes of :meth:`raw_series`, without a point per sample)."""
        with self._db.read() as conn:
            keys = self._series(conn, deployment)
            s = self._samples(conn, deployment, start, end)
        out = WindowData()
        counters = np.asarray(sorted(sid for sid, key in keys.items() if key[0] in COUNTERS), np.int64)
        inc = _increases(s, start, end, counters)
        for sid, value in zip(inc.sid.tolist(), inc.value.tolist(), strict=True):
            out.counters[keys[sid]] = value
        last = blocks.last_values(s)
        for sid, value in zip(last.sid.tolist(), last.value.tolist(), strict=True):
            key = keys.get(sid)
            if key is not None and key[0] in GAUGES:
                out.gauges[key] = value
        return out

    def rollups(self, deployment: str, start: float, end: float) -> dict[float, WindowData]:
        """Counter increases per hour with ``start <= t < end``."""
        out: dict[float, WindowData] = {}
        with self._db.read() as conn:
            keys = self._series(conn, deployment)
            rows = conn.execute(
                "SELECT t0, data FROM monitor_blocks WHERE deployment = ? AND kind = ? AND t0 >= ? AND t0 < ?",
                (deployment, HOURLY, start, end),
            ).fetchall()
        for t0, data in rows:
            s = self._decode(deployment, data)
            counters = out.setdefault(float(t0), WindowData()).counters
            for sid, value in zip(s.sid.tolist(), s.value.tolist(), strict=True):
                key = keys.get(sid)
                if key is not None:
                    counters[key] = counters.get(key, 0.0) + value
        return out

    def counts(self) -> dict[str, int]:
        """Series, targets, blocks of each kind and the samples they hold (for tests and the benchmark)."""
        with self._db.read() as conn:
            out = {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                   for t in ("monitor_series", "monitor_targets")}  # fmt: skip
            for kind, name in ((FRAME, "frames"), (CHUNK, "chunks"), (HOURLY, "hourly")):
                n, samples = conn.execute(
                    "SELECT count(*), coalesce(sum(n), 0) FROM monitor_blocks WHERE kind = ?", (kind,)
                ).fetchone()
                out[name], out[f"{name}_samples"] = int(n), int(samples)
        return out


def _increases(s: Samples, start: float, end: float, counters: np.ndarray[Any, np.dtype[np.int64]]) -> Samples:
    """Each counter's increase over ``(start, end]`` (across resets) as samples at ``start``."""
    if not len(s):
        return blocks.EMPTY
    same = np.zeros(len(s), bool)
    same[1:] = s.sid[1:] == s.sid[:-1]
    prev = np.concatenate([[0.0], s.value[:-1]])
    step = np.where(s.value >= prev, s.value - prev, s.value)
    counted = same & (s.t > start) & (s.t <= end) & np.isin(s.sid, counters)
    sids, inverse = np.unique(s.sid, return_inverse=True)
    total = np.bincount(inverse, weights=np.where(counted, step, 0.0), minlength=sids.size)
    nonzero = total != 0
    return Samples(sids[nonzero], np.full(int(nonzero.sum()), start), total[nonzero])
