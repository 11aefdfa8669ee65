"""Samples, counter resets across instances, rollups, retention and restarts, with a controllable clock."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.monitor.derive import FEEDBACK, REQUESTS, Labels, WindowData, labels_of, window_data
from daemon.monitor.service import Monitor
from daemon.monitor.store import MonitorStore, ScrapeResult
from daemon.settings import MonitorSection
from daemon.store import blocks, migrations
from daemon.store.engine import make_engine

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
    before = store.counts()
    assert store.write_cycle(T0 + 75, [result("b", 120, hits=1)]) == 0
    assert store.counts() == before


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
    settings = MonitorSection(raw_retention_hours=1, rollup_retention_days=30)
    mon = Monitor(settings, store, list, clock=clock)
    # Three hours of traffic: one request per second, scraped every 15 s, compacted every ten minutes.
    for i in range(0, 3 * 3600 + 1, 15):
        store.write_cycle(T0 + i, [result("a", float(i))])
        if i % 600 == 0:
            store.compact(T0 + i)
            store.rollup(T0 + i)
    clock.now = T0 + 3 * 3600 + 5
    store.compact(clock.now)
    store.rollup(clock.now)
    counts = store.counts()
    assert counts["hourly"] == 3
    assert counts["chunks"] == 3 * 6
    deleted = store.retention(clock.now, raw_seconds=3600, hour_seconds=30 * 86400)
    assert deleted == 2 * 6  # the chunks that end before the cutoff (the one holding it stays)
    # Within the raw retention: raw samples (the base before the window survived retention).
    short = mon.metrics("dep", 1800)
    assert short.requests == pytest.approx(1800, abs=15)
    # Longer than the raw retention: whole hours from the hourly rollups plus the raw tail.
    long = mon.metrics("dep", 3 * 3600 + 5)
    assert long.requests == pytest.approx(3 * 3600, abs=15)
    assert long.step_seconds == 3600
    assert long.request_rate == pytest.approx(1.0, rel=0.01)
    # Raw samples older than the retention are gone, but for the chunk holding the cutoff.
    remaining = store.raw_series("dep", T0 - 1, clock.now)
    assert clock.now - 3600 - 600 - 15 <= min(t for pts in remaining.values() for t, _ in pts) <= clock.now - 3600


def _all_raw(store: MonitorStore) -> dict[int, list[tuple[float, float]]]:
    """Every raw sample in the database by series (decoded from frames and chunks)."""
    out: dict[int, list[tuple[float, float]]] = {}
    with store._db.read() as conn:
        for (data,) in conn.execute("SELECT data FROM monitor_blocks WHERE kind IN (0, 1)"):
            s = blocks.decode(data)
            for sid, t, v in zip(s.sid.tolist(), s.t.tolist(), s.value.tolist(), strict=True):
                out.setdefault(sid, []).append((t, v))
    return {sid: sorted(set(points)) for sid, points in out.items()}


def test_retention_never_changes_what_a_window_inside_the_raw_retention_reads(store: MonitorStore) -> None:
    """For any window starting at or after the cutoff, the series read are the same before and after
    retention; deployments no longer in the registry go whole once their last sample is older."""
    rng = random.Random(7)
    keys = [labels_of({"endpoint": f"/e{i}", "status": "200"}) for i in range(12)]
    values = dict.fromkeys(keys, 0.0)
    for i in range(400):
        samples = []
        for k, lab in enumerate(keys):
            if i >= 10 * (k % 4) and rng.random() < (0.9 if k % 3 else 0.05):  # some series rarely change
                values[lab] += rng.randint(1, 5)
            if i >= 10 * (k % 4):  # some series appear later
                samples.append((REQUESTS, lab, values[lab]))
        deps = [ScrapeResult(f"d{d}", "a", T0 - 100, True, "", 0.01, samples) for d in range(3 if i < 300 else 2)]
        store.write_cycle(T0 + 15 * i, deps)
        if i % 40 == 39:
            store.compact(T0 + 15 * i + 1)
            store.rollup(T0 + 15 * i + 1)
    end = T0 + 15 * 400
    store.compact(end + 600)
    store.rollup(T0 + 2 * 3600)  # every hour rolled up: retention may delete up to any cutoff
    assert store.counts()["chunks"] > 20
    for cutoff in (T0 + 15 * 20 + 7, T0 + 15 * 130, T0 + 15 * 320, end - 20):
        starts = [cutoff, cutoff + 200, end - 100]
        before = {(d, w): store.raw_series(d, w, end) for d in ("d0", "d1") for w in starts}
        store.retention(cutoff, raw_seconds=0, hour_seconds=10**9)
        assert {(d, w): store.raw_series(d, w, end) for d in ("d0", "d1") for w in starts} == before
    assert store.counts()["chunks"] == 2  # the newest of d0 and d1; all of d2 went
    # d2 stopped at cycle 300; it is not in the registry, so past the cutoff it is gone with its series.
    assert store.target("d2") is None
    assert store.raw_series("d2", T0, end) == {}
    store.retention(end, raw_seconds=0, hour_seconds=10**9)
    assert store.target("d0") is None  # none is a registered deployment: past their last sample, all go


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


def _hourly_rows(store: MonitorStore) -> dict[tuple[int, float], float]:
    out: dict[tuple[int, float], float] = {}
    with store._db.read() as conn:
        for (data,) in conn.execute("SELECT data FROM monitor_blocks WHERE kind = 2"):
            s = blocks.decode(data)
            out.update(((sid, t), v) for sid, t, v in zip(s.sid.tolist(), s.t.tolist(), s.value.tolist(), strict=True))
    return out


def _expected_hours(store: MonitorStore, until: float) -> dict[tuple[int, float], float]:
    """Each counter's increases from its raw samples, in the hour (h, h + 3600] of the later sample."""
    with store._db.read() as conn:
        counters = {sid for sid, metric in conn.execute("SELECT id, metric FROM monitor_series")
                    if metric in (REQUESTS, FEEDBACK)}  # fmt: skip
    out: dict[tuple[int, float], float] = {}
    for sid, points in _all_raw(store).items():
        for (_, prev), (t, v) in itertools.pairwise(points):
            h = math.ceil(t / 3600) * 3600 - 3600
            if sid in counters and h + 3600 <= until:
                out[(sid, h)] = out.get((sid, h), 0.0) + (v - prev if v >= prev else v)
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize("seed", range(3))
def test_hourly_rollups_equal_the_raw_samples_at_any_cadence_and_across_a_restart(tmp_path: Path, seed: int) -> None:
    cycles = _generated_cycles(seed, 1000)
    end = math.floor(cycles[-1][0] / 3600) * 3600
    got = []
    for cadence in ("every cycle", "every 10 minutes", "once", "restart"):
        s = MonitorStore(tmp_path / cadence)
        last = T0
        for n, (t, results) in enumerate(cycles):
            s.write_cycle(t, results)
            if cadence == "every cycle" or (cadence != "once" and t - last >= 600):
                s.compact(t)
                s.rollup(t)
                last = t
            if cadence == "restart" and n in (40, 41, 397, 700):  # a new daemon, sometimes mid-chunk
                s.close()
                s = MonitorStore(tmp_path / cadence)
        s.compact(end)
        s.rollup(end)
        try:
            assert _hourly_rows(s) == pytest.approx(_expected_hours(s, end)), cadence
            got.append(_hourly_rows(s))
        finally:
            s.close()
    assert all(g == pytest.approx(got[0]) for g in got)
    assert len(got[0]) > 20


def test_a_failed_cycle_leaves_no_trace_in_the_writer(store: MonitorStore) -> None:
    """New series get their ids in the cycle's transaction; a cycle that fails is forgotten whole."""
    store.write_cycle(T0, [result("a", 10)])
    other = labels_of({"endpoint": "/predict", "status": "500"})
    bad = ScrapeResult("dep", "a", T0 - 100, True, "", 0.01, [(REQUESTS, OK, 20.0), (REQUESTS, other, float("nan"))])
    with pytest.raises(ValueError, match="not a finite number"):
        store.write_cycle(T0 + 15, [bad])
    before = store.counts()
    store.write_cycle(T0 + 30, [ScrapeResult("dep", "a", T0 - 100, True, "", 0.01, [(REQUESTS, other, 2.0)])])
    after = store.counts()
    assert after["monitor_series"] == before["monitor_series"] + 1
    series = store.raw_series("dep", T0 - 1000, T0 + 100)
    assert series[(REQUESTS, OK)] == [(T0 - 100, 0.0), (T0, 10.0)]
    # Its explicit zero is at the last success the database knows (T0), not at the undone cycle's.
    assert series[(REQUESTS, other)] == [(T0, 0.0), (T0 + 30, 2.0)]


def test_samples_and_hourly_rollups_of_schema_v6_survive_the_move_to_blocks(state: Path) -> None:
    engine = make_engine(state)
    migrations.migrate(engine, target=6)
    with engine.begin() as conn:
        conn.exec_driver_sql("""INSERT INTO monitor_series (id, deployment, metric, labels) VALUES
            (1, 'dep', 'modeltui_requests_total', '{"endpoint":"/predict","status":"200"}'), (2, 'dep', 'up', '{}')""")
        conn.exec_driver_sql(f"""INSERT INTO monitor_samples (series_id, t, value) VALUES
            (1, {T0 - 100}, 0), (1, {T0}, 5), (1, {T0 + 15}, 7.5), (2, {T0}, 1)""")
        conn.exec_driver_sql(f"""INSERT INTO monitor_rollups (series_id, resolution, t, value) VALUES
            (1, 3600, {T0 - 3600}, 42), (1, 60, {T0 - 60}, 3)""")
    engine.dispose()
    s = MonitorStore(state)  # migrates to the latest schema
    try:
        assert s.raw_series("dep", T0 - 1000, T0 + 100) == {
            (REQUESTS, OK): [(T0 - 100, 0.0), (T0, 5.0), (T0 + 15, 7.5)],
            ("up", ()): [(T0, 1.0)],
        }
        assert s.rollups("dep", T0 - 7200, T0)[T0 - 3600].counters == {(REQUESTS, OK): 42.0}
        assert s.rolled_until() == T0
        s.write_cycle(T0 + 30, [result("a", 9)])  # the writer continues from the migrated last values
        assert s.raw_series("dep", T0 + 20, T0 + 40)[(REQUESTS, OK)] == [(T0 + 15, 7.5), (T0 + 30, 9.0)]
    finally:
        s.close()


def test_a_damaged_block_is_skipped_with_a_warning(store: MonitorStore, caplog: pytest.LogCaptureFixture) -> None:
    store.write_cycle(T0, [result("a", 10)])
    store.write_cycle(T0 + 15, [result("a", 20)])
    with store._db.write() as conn:
        conn.execute("UPDATE monitor_blocks SET data = X'00112233445566' WHERE t1 = ?", (T0,))
    series = store.raw_series("dep", T0 - 1000, T0 + 100)
    assert series[(REQUESTS, OK)] == [(T0 + 15, 20.0)]  # the other frame still reads
    assert "damaged monitoring block" in caplog.text
    store.write_cycle(T0 + 30, [result("a", 25)])  # and the writer goes on
    store.compact(T0 + 1200)
    assert store.counts()["chunks"] == 1


def test_hourly_rollups_start_at_the_first_cycle_not_at_an_old_instance_s_start(store: MonitorStore) -> None:
    """A deployment up for a week when first scraped: its explicit zeros are at its start, but there is
    nothing to roll up for the week before (no walk over empty hours, no block for them)."""
    week = 7 * 86400
    store.write_cycle(T0, [ScrapeResult("dep", "a", T0 - week, True, "", 0.01, [(REQUESTS, OK, 5000.0)])])
    store.write_cycle(T0 + 3600, [ScrapeResult("dep", "a", T0 - week, True, "", 0.01, [(REQUESTS, OK, 5600.0)])])
    assert store.rollup(T0 + 7200) == 2  # (T0 - 3600, T0]: the week's 5000; (T0, T0 + 3600]: the hour's 600
    assert store.rollups("dep", T0 - week, T0 + 7200) == {
        T0 - 3600: WindowData({(REQUESTS, OK): 5000.0}),
        T0: WindowData({(REQUESTS, OK): 600.0}),
    }


@pytest.mark.parametrize("seed", range(3))
def test_the_vectorised_window_equals_the_sum_of_the_points(tmp_path: Path, seed: int) -> None:
    """Alerts and the exporter ask without points (one pass over the columns): same figures as the view."""
    store = MonitorStore(tmp_path / "s")
    try:
        cycles = _generated_cycles(seed, 300)
        for n, (t, results) in enumerate(cycles):
            store.write_cycle(t, results)
            if n % 37 == 0:
                store.compact(t)
        end = cycles[-1][0]
        for window in (60, 300, 1800, 3 * 3600):
            clock = Clock()
            clock.now = end + 1
            mon = Monitor(MonitorSection(), store, list, clock=clock)
            for dep in ("d0", "d1"):
                full = mon.metrics(dep, window)
                fast = mon.metrics(dep, window, points=False)
                assert fast.points == []
                assert fast.model_dump(exclude={"points"}) == full.model_dump(exclude={"points"})
                assert store.window(dep, end + 1 - window, end + 1) == window_data(
                    store.raw_series(dep, end + 1 - window, end + 1), end + 1 - window, end + 1
                )
    finally:
        store.close()
