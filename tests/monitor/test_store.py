"""Samples, counter resets across instances, rollups, retention and restarts, with a controllable clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.monitor.derive import FEEDBACK, REQUESTS, labels_of
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
