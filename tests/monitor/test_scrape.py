"""Scraping real HTTP servers on 127.0.0.1: a good one, one serving garbage, one that never answers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from daemon.monitor.derive import DURATION_BUCKET, FEEDBACK, REQUESTS, UP
from daemon.monitor.scrape import Target, scrape_all
from daemon.monitor.service import Monitor
from daemon.monitor.store import MonitorStore
from daemon.serving.metrics import Metrics
from daemon.settings import MonitorSection


def runtime_metrics() -> bytes:
    m = Metrics("iris", "3", "sklearn")
    m.ready = True
    for i in range(40):
        m.request("/predict", 200 if i % 10 else 500, 0.002 * (i % 5 + 1))
    m.feedback[("1", "1")] += 7
    m.feedback[("0", "1")] += 2
    return m.render()


async def _serve(body: bytes, status: str = "200 OK") -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, int]]:
    good = await _serve(runtime_metrics())
    garbage = await _serve(b"\x00\x01 this is { not metrics\n<html>}}}\n")
    # Listens (the kernel completes handshakes) but never accepts nor answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    ports = {
        "good": good.sockets[0].getsockname()[1],
        "garbage": garbage.sockets[0].getsockname()[1],
        "silent": silent.getsockname()[1],
    }
    try:
        yield ports
    finally:
        for srv in (good, garbage):
            srv.close()
            await srv.wait_closed()
        silent.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MonitorStore]:
    s = MonitorStore(tmp_path / "state")
    yield s
    s.close()


async def test_good_stored_others_down_within_the_timeout(servers: dict[str, int], store: MonitorStore) -> None:
    targets = [
        Target("good", "127.0.0.1", servers["good"], "i1", time.time() - 60),
        Target("garbage", "127.0.0.1", servers["garbage"], "i2", time.time() - 60),
        Target("silent", "127.0.0.1", servers["silent"], "i3", time.time() - 60),
        Target("stopped", "127.0.0.1", None),
    ]
    settings = MonitorSection(scrape_interval_seconds=5, scrape_timeout_seconds=0.5)
    monitor = Monitor(settings, store, lambda: targets)
    started = time.monotonic()
    report = await monitor.scrape_cycle()
    elapsed = time.monotonic() - started
    assert elapsed < 2 * 0.5  # the silent target costs the timeout once (a second one would make it 1 s)
    assert (report.targets, report.up) == (4, 1)
    states = {name: store.target(name) for name in ("good", "garbage", "silent", "stopped")}
    assert states["good"] is not None
    assert states["good"].up
    for name in ("garbage", "silent", "stopped"):
        st = states[name]
        assert st is not None
        assert not st.up, name
        assert st.error, name
    assert "unparseable" in states["garbage"].error  # type: ignore[union-attr]
    assert "no answer within 0.5 s" in states["silent"].error  # type: ignore[union-attr]
    now = time.time()
    series = store.raw_series("good", now - 3600, now + 1)
    names = {metric for metric, _ in series}
    assert {REQUESTS, DURATION_BUCKET, FEEDBACK, UP} <= names
    assert store.raw_series("garbage", now - 3600, now + 1).keys() == {(UP, ())}
    m = monitor.metrics("good", 3600)
    assert m.up is True
    assert m.requests == 40
    assert m.error_rate == pytest.approx(4 / 40)
    assert m.labelled == 9
    assert m.accuracy == pytest.approx(7 / 9)
    assert m.latency_p50_seconds is not None
    assert monitor.metrics("silent", 3600).up is False


async def test_concurrency_is_bounded(servers: dict[str, int]) -> None:
    """Eight silent targets with two slots take four timeouts (eight in a row would take eight); with eight
    slots, one. The timeout is long enough that a loaded machine's delays stay well inside each margin."""
    targets = [Target(f"s{i}", "127.0.0.1", servers["silent"]) for i in range(8)]
    started = time.monotonic()
    results = await scrape_all(targets, concurrency=2, timeout_s=0.5)
    assert 4 * 0.5 <= time.monotonic() - started < 8 * 0.5
    assert not any(r.up for r in results)
    started = time.monotonic()
    await scrape_all(targets, concurrency=8, timeout_s=0.5)
    assert time.monotonic() - started < 4 * 0.5


async def test_http_error_status_is_down() -> None:
    srv = await _serve(b"nope", status="503 Service Unavailable")
    try:
        port = srv.sockets[0].getsockname()[1]
        (res,) = await scrape_all([Target("x", "127.0.0.1", port)], timeout_s=1)
        assert not res.up
        assert res.error == "HTTP 503"
    finally:
        srv.close()
        await srv.wait_closed()
