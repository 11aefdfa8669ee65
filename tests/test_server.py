"""The socket server in-process, with a minimal dispatcher: slow subscribers and shutdown."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from daemon import server as server_mod
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.events import RegistryEvent
from daemon.server import Context, EventHub, HandlerResult, Server
from modeltui.client import connect


async def dispatch(request: Any, ctx: Context) -> HandlerResult:
    if isinstance(request, q.Subscribe):
        ctx.subscribe(set(request.topics))
        return r.Ack()
    if isinstance(request, q.Ping):
        return r.Pong(daemon_version="test", pid=0)
    raise AssertionError(request)


def raw_subscriber(path: Path) -> socket.socket:
    """A client that subscribes and then never reads again (a suspended TUI)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(str(path))
    s.sendall(b'{"type":"hello","protocol":1,"client":"slow"}\n')
    s.sendall(b'{"type":"request","id":1,"request":{"op":"subscribe","topics":["registry"]}}\n')
    return s


async def test_slow_subscriber_is_dropped_and_others_keep_being_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_mod, "MAX_QUEUED_EVENTS", 5)
    hub = EventHub()
    srv = Server(tmp_path / "s.sock", dispatch, hub)
    await srv.start()
    slow = raw_subscriber(tmp_path / "s.sock")
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if hub.connections and all(c.topics for c in hub.connections):
                break
        big = "x" * 100
        for i in range(5000):  # far more than the socket buffer plus the queue
            hub.publish(RegistryEvent(kind="version.pushed", model=f"m{big}", version=i + 1))
            if i % 100 == 0:
                await asyncio.sleep(0)
        for _ in range(200):
            if not hub.connections:
                break
            await asyncio.sleep(0.01)
        assert not hub.connections  # the slow subscriber was dropped
        for _ in range(3):  # new clients (reusing descriptor numbers) are served normally
            client = await asyncio.wait_for(connect(tmp_path / "s.sock"), 5)
            pong = await asyncio.wait_for(client.call(q.Ping()), 5)
            assert pong.daemon_version == "test"
            await client.close()
    finally:
        slow.close()
        await asyncio.wait_for(srv.stop(grace=5), 10)
    assert not (tmp_path / "s.sock").exists()


async def test_stop_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def slow_dispatch(request: Any, ctx: Context) -> HandlerResult:
        started.set()
        await asyncio.sleep(0.5)
        return r.Pong(daemon_version="slow", pid=0)

    srv = Server(tmp_path / "s.sock", slow_dispatch, EventHub())
    await srv.start()
    client = await connect(tmp_path / "s.sock")
    call = asyncio.ensure_future(client.call(q.Ping()))
    await started.wait()
    await srv.stop(grace=5)
    assert (await call).daemon_version == "slow"  # answered, not cut off
    await client.close()


def test_a_subscriber_queue_is_bounded_in_bytes_as_well_as_in_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Log batches can be large: a few of them must not pile up megabytes for a subscriber that never reads."""
    monkeypatch.setattr(server_mod, "MAX_QUEUED_BYTES", 1000)
    c = server_mod.Connection(conn=None, caller=server_mod.Caller(0, 0, 0, "u"))  # type: ignore[arg-type]
    assert c.push(b"x" * 600)
    assert not c.push(b"x" * 600)  # over the byte limit, far under the event limit
    assert c.push(b"x" * 400)
    assert c.drop() == 2
    assert c.queued_bytes == 0
    assert not c.push(b"x")  # dropped: nothing more is queued
