"""Samples, counter resets across instances, rollups, retention and restarts, with a controllable clock."""

from __future__ import annotations

import itertools
import math
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.monitor.derive import FEEDBACK, REQUESTS, Labels, labels_of
from daemon.monitor.service import Monitor
from daemon.monitor.store import MonitorStore, ScrapeResult
from daemon.settings import MonitorSection

T0 = 1_800_000_000.0  # a minute boundary
OK = labels_of({"endpoint": "/predict", "status": "200"})
HIT = labels_of({"predicted": "1", "actual": "1"})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def result(instance: str, requests: float, hits: float = 0.0, *, up: bool = True) -> ScrapeResult:
    samples = [(REQUESTS, OK, requests)]
    if hits:
        samples.append((FEEDBACK, HIT, hits))
    return ScrapeResult("dep", instance, T0 - 100, up, "" if up else "down", 0.01, samples if up else [])


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state: Path) -> Iterator[MonitorStore]:
    s = MonitorStore(state)
    yield s
    s.close()


def test_restart_and_new_series_count_from_zero(store: MonitorStore) -> None:
    clock = Clock()
    mon = Monitor(MonitorSection(), store, list, clock=clock)
    # The first scrape of an instance that started 100 s ago: its 50 requests happened since its start.
    store.write_cycle(T0, [result("a", 50)])
    store.write_cycle(T0 + 15, [result("a", 80, hits=3)])  # feedback series appears: 3 since the last scrape
    store.write_cycle(T0 + 30, [result("a", 80, hits=3, up=False)])  # down: nothing stored but up=0
    store.write_cycle(T0 + 45, [result("a", 90, hits=3)])  # same instance again: counters continue
    # A new instance whose counter already passed the old value: still counted from 0.
    store.write_cycle(T0 + 60, [result("b", 120, hits=1)])
    clock.now = T0 + 61
    m = mon.metrics("dep", 600)
    assert m.requests == 50 + 30 + 10 + 120
    assert m.labelled == 3 + 1
    assert m.up is True
    # Unchanged values are not stored again.
    before = store.counts()["monitor_samples"]
    store.write_cycle(T0 + 75, [result("b", 120, hits=1)])
    assert store.counts()["monitor_samples"] == before


def test_restarted_daemon_continues_without_a_gap(state: Path) -> None:
    s = MonitorStore(state)
    s.write_cycle(T0, [result("a", 10)])
    s.write_cycle(T0 + 15, [result("a", 20)])
    s.close()
    s = MonitorStore(state)  # a new daemon: same instance still running, counted on from its last value
    try:
        s.write_cycle(T0 + 300, [result("a", 70)])
        clock = Clock()
        clock.now = T0 + 301
        assert Monitor(MonitorSection(), s, list, clock=clock).metrics("dep", 600).requests == 70
    finally:
        s.close()


def test_rollups_answer_long_windows_and_retention_keeps_the_base(store: MonitorStore) -> None:
    clock = Clock()
    settings = MonitorSection(raw_retention_hours=1, minute_rollup_retention_hours=2, rollup_retention_days=30)
    mon = Monitor(settings, store, list, clock=clock)
    # Three hours of traffic: one request per second, scraped every 15 s.
    for i in range(0, 3 * 3600 + 1, 15):
        store.write_cycle(T0 + i, [result("a", float(i))])
    clock.now = T0 + 3 * 3600 + 5
    store.rollup(clock.now)
    counts = store.counts()
    assert counts["monitor_rollups"] > 0
    deleted = store.retention(clock.now, raw_seconds=3600, minute_seconds=7200, hour_seconds=30 * 86400)
    assert deleted > 0
    # Within the raw retention: raw samples (the base before the window survived retention).
    short = mon.metrics("dep", 1800)
    assert short.requests == pytest.approx(1800, abs=15)
    # Longer than the raw retention: whole hours from the 1-hour rollups plus the raw tail.
    long = mon.metrics("dep", 3 * 3600 + 5)
    assert long.requests == pytest.approx(3 * 3600, abs=15)
    assert long.step_seconds == 60
    assert long.request_rate == pytest.approx(1.0, rel=0.01)
    # Raw samples older than the retention are gone except each series' last one.
    remaining = store.raw_series("dep", T0 - 1, clock.now)
    assert min(t for pts in remaining.values() for t, _ in pts) >= clock.now - 3600 - 15


def _samples(store: MonitorStore) -> set[tuple[int, float, float]]:
    with store._db.read() as conn:
        return {
            (int(a), float(b), float(c)) for a, b, c in conn.execute("SELECT series_id, t, value FROM monitor_samples")
        }


def test_series_are_found_by_their_labels_in_any_order_and_after_a_restart(state: Path) -> None:
    two = labels_of({"endpoint": "/predict", "status": "500"})
    s = MonitorStore(state)
    s.write_cycle(T0, [ScrapeResult("dep", "a", T0 - 100, True, "", 0.01, [(REQUESTS, OK, 5.0), (REQUESTS, two, 1.0)])])
    series = s.counts()["monitor_series"]
    # The same labels out of order are the same series (the stored JSON, sorted by name, is the identity).
    s.write_cycle(T0 + 15, [ScrapeResult("dep", "a", T0 - 100, True, "", 0.01, [(REQUESTS, OK[::-1], 6.0)])])
    assert s.counts()["monitor_series"] == series
    s.close()
    s = MonitorStore(state)  # a new daemon maps scraped labels onto the stored series
    try:
        before = s.counts()
        s.write_cycle(
            T0 + 30, [ScrapeResult("dep", "a", T0 - 100, True, "", 0.01, [(REQUESTS, OK, 6.0), (REQUESTS, two, 1.0)])]
        )
        assert s.counts() == before  # nothing new: same series, unchanged values
        s.write_cycle(T0 + 45, [ScrapeResult("dep", "a", T0 - 100, True, "", 0.01, [(REQUESTS, two, 2.0)])])
        assert s.counts()["monitor_series"] == series
        series_map = s.raw_series("dep", T0 - 1000, T0 + 100)
        assert series_map[(REQUESTS, OK)] == [(T0 - 100, 0.0), (T0, 5.0), (T0 + 15, 6.0)]
        assert series_map[(REQUESTS, two)] == [(T0 - 100, 0.0), (T0, 1.0), (T0 + 45, 2.0)]
    finally:
        s.close()


def test_retention_deletes_exactly_what_the_per_series_rule_does(store: MonitorStore) -> None:
    """Each series keeps every sample at or after its last one at or before the cutoff (its base); a series
    with nothing at or before the cutoff keeps everything; the series of a deployment no longer in the
    registry go once their last sample is older than the cutoff."""
    rng = random.Random(7)
    keys = [labels_of({"endpoint": f"/e{i}", "status": "200"}) for i in range(12)]
    values = dict.fromkeys(keys, 0.0)
    for i in range(120):
        samples = []
        for k, lab in enumerate(keys):
            if i >= 10 * (k % 4) and rng.random() < (0.9 if k % 3 else 0.05):  # some series rarely change
                values[lab] += rng.randint(1, 5)
            if i >= 10 * (k % 4):  # some series appear later
                samples.append((REQUESTS, lab, values[lab]))
        deps = [ScrapeResult(f"d{d}", "a", T0 - 100, True, "", 0.01, samples) for d in range(3)]
        store.write_cycle(T0 + 15 * i, deps)
    for cutoff in (T0 - 500, T0 + 15 * 20 + 7, T0 + 15 * 60, T0 + 15 * 60, T0 + 15 * 119 + 1, T0 + 10**6):
        rows = _samples(store)
        by_series: dict[int, list[float]] = {}
        for sid, t, _ in rows:
            by_series.setdefault(sid, []).append(t)
        bases = {sid: max((t for t in ts if t <= cutoff), default=None) for sid, ts in by_series.items()}
        kept = {r for r in rows if bases[r[0]] is None or r[1] >= bases[r[0]]}  # type: ignore[operator]
        # These deployments are not in the registry: a series whose last sample is older goes whole.
        gone = {sid for sid, ts in by_series.items() if max(ts) < cutoff}
        deleted = store.retention(cutoff, raw_seconds=0, minute_seconds=10**9, hour_seconds=10**9)
        assert _samples(store) == {r for r in kept if r[0] not in gone}
        assert deleted == len(rows) - len(kept)
    assert store.counts()["monitor_samples"] == 0


def _generated_cycles(seed: int, n: int) -> list[tuple[float, list[ScrapeResult]]]:
    """Cycles of two deployments with counters that move, stall, appear late, reset on a new instance, and
    scrapes that fail; times not on minute boundaries, and some exactly on them."""
    rng = random.Random(seed)
    keys = [labels_of({"endpoint": f"/e{i}", "status": "200"}) for i in range(6)]
    state = {d: {"instance": "a", "values": dict.fromkeys(keys, 0.0), "hits": 0.0} for d in ("d0", "d1")}
    out = []
    t = T0
    for i in range(n):
        t += rng.choice((15.0, 15.0, 15.0, 7.5, 22.25, 45.0))
        results = []
        for d, st in state.items():
            if rng.random() < 0.03:  # a restart: counters start again from 0
                st["instance"] = f"i{i}"
                st["values"] = dict.fromkeys(keys, 0.0)
            values: dict[Labels, float] = st["values"]  # type: ignore[assignment]
            for k, lab in enumerate(keys):
                if rng.random() < 0.7:
                    values[lab] += rng.randint(0, 4) * (k + 1)
            samples = [(REQUESTS, lab, v) for k, (lab, v) in enumerate(values.items()) if i >= 5 * k]
            if rng.random() < 0.5:
                st["hits"] = float(st["hits"]) + rng.randint(0, 2)  # type: ignore[arg-type]
            if st["hits"]:
                samples.append((FEEDBACK, HIT, float(st["hits"])))  # type: ignore[arg-type]
            up = rng.random() > 0.05
            results.append(ScrapeResult(d, str(st["instance"]), t - 100, up, "" if up else "down", 0.01,
                                        samples if up else []))  # fmt: skip
        out.append((t, results))
    return out


def _minute_rows(store: MonitorStore) -> dict[tuple[int, float], float]:
    with store._db.read() as conn:
        return {(sid, t): v for sid, t, v in conn.execute(
            "SELECT series_id, t, value FROM monitor_rollups WHERE resolution = 60")}  # fmt: skip


def _expected_minutes(store: MonitorStore, until: float) -> dict[tuple[int, float], float]:
    """Each counter's increases from its raw samples, in the minute (m, m + 60] of the later sample."""
    with store._db.read() as conn:
        counters = {sid for sid, metric in conn.execute("SELECT id, metric FROM monitor_series")
                    if metric in (REQUESTS, FEEDBACK)}  # fmt: skip
        rows = conn.execute("SELECT series_id, t, value FROM monitor_samples ORDER BY series_id, t").fetchall()
    out: dict[tuple[int, float], float] = {}
    for (sid, _, prev), (sid2, t, v) in itertools.pairwise(rows):
        m = math.ceil(t / 60) * 60 - 60
        if sid == sid2 and sid in counters and m + 60 <= until:
            out[(sid, m)] = out.get((sid, m), 0.0) + (v - prev if v >= prev else v)
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize("seed", range(4))
def test_minute_rollups_from_memory_equal_the_raw_samples_at_any_cadence_and_across_a_restart(
    tmp_path: Path, seed: int
) -> None:
    cycles = _generated_cycles(seed, 160)
    end = math.floor(cycles[-1][0] / 60) * 60
    got = []
    for cadence in ("every cycle", "every 10 minutes", "once", "restart"):
        s = MonitorStore(tmp_path / cadence)
        last_rollup = T0
        for n, (t, results) in enumerate(cycles):
            s.write_cycle(t, results)
            if cadence == "every cycle" or (cadence != "once" and t - last_rollup >= 600):
                s.rollup(t)
                last_rollup = t
            if cadence == "restart" and n in (40, 41, 97):  # a new daemon, sometimes mid-minute
                s.close()
                s = MonitorStore(tmp_path / cadence)
        s.rollup(end)
        try:
            assert _minute_rows(s) == pytest.approx(_expected_minutes(s, end)), cadence
            got.append(_minute_rows(s))
        finally:
            s.close()
    assert all(g == got[0] for g in got)
    assert len(got[0]) > 50


def test_a_failed_cycle_leaves_no_trace_in_the_writer(store: MonitorStore) -> None:
    """New series get their ids in the cycle's transaction; a cycle that fails is forgotten whole."""
    store.write_cycle(T0, [result("a", 10)])
    other = labels_of({"endpoint": "/predict", "status": "500"})
    bad = ScrapeResult("dep", "a", T0 - 100, True, "", 0.01, [(REQUESTS, OK, 20.0), (REQUESTS, other, float("nan"))])
    with pytest.raises(sqlite3.IntegrityError):  # NaN is stored as NULL: the value column refuses it
        store.write_cycle(T0 + 15, [bad])
    before = store.counts()
    store.write_cycle(T0 + 30, [ScrapeResult("dep", "a", T0 - 100, True, "", 0.01, [(REQUESTS, other, 2.0)])])
    after = store.counts()
    assert after["monitor_series"] == before["monitor_series"] + 1
    series = store.raw_series("dep", T0 - 1000, T0 + 100)
    assert series[(REQUESTS, OK)] == [(T0 - 100, 0.0), (T0, 10.0)]
    # Its explicit zero is at the last success the database knows (T0), not at the undone cycle's.
    assert series[(REQUESTS, other)] == [(T0, 0.0), (T0 + 30, 2.0)]
