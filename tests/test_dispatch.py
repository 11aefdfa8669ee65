"""The handler table as the daemon builds it: every request type answered exactly once, or no daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from daemon.access import Access
from daemon.app import DaemonApp
from daemon.audit import AuditStore
from daemon.handlers.cluster import ClusterHandlers
from daemon.handlers.dispatch import Dispatcher, HandlerTableError, handles
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.server import Context
from daemon.settings import load_settings


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[DaemonApp]:
    """The daemon's composition root, started in this process (no exporter: no port to contend for)."""
    config = tmp_path / "daemon.toml"
    config.write_text("[exporter]\nenabled = false\n")
    settings = load_settings(config, state_dir=str(tmp_path / "state"), socket=str(tmp_path / "run" / "s.sock"),
                             environ={})  # fmt: skip
    daemon = DaemonApp(settings)
    try:
        await daemon.startup()
        yield daemon
    finally:
        await daemon.shutdown()


def handler_objects(dispatcher: Dispatcher) -> list[object]:
    """The handler objects the daemon gave its dispatcher, each once, in the order first seen."""
    objects: list[object] = []
    for method in dispatcher.table.values():
        owner = getattr(method, "__self__")  # noqa: B009 - a bound method's object, untyped in Callable
        if not any(owner is seen for seen in objects):
            objects.append(owner)
    return objects


async def test_the_daemon_answers_every_request_type_with_exactly_one_handler(app: DaemonApp) -> None:
    assert app.dispatcher is not None
    table = app.dispatcher.table
    assert set(table) == set(q.REQUEST_TYPES)
    assert len({getattr(m, "__func__") for m in table.values()}) == len(q.REQUEST_TYPES)  # noqa: B009


async def test_a_dispatcher_missing_a_request_type_is_refused_when_built(app: DaemonApp, tmp_path: Path) -> None:
    assert app.dispatcher is not None
    without_cluster = [h for h in handler_objects(app.dispatcher) if not isinstance(h, ClusterHandlers)]
    with pytest.raises(HandlerTableError, match=r"no handler for ClusterStatusRequest$"):
        Dispatcher(without_cluster, app.dispatcher.access, app.dispatcher.audit)


class PingHandlers:
    @handles(q.Ping)
    async def ping(self, req: q.Ping, ctx: Context) -> r.Pong:
        return r.Pong(daemon_version="test", pid=0)


class OtherPingHandlers:
    @handles(q.Ping)
    async def pong(self, req: q.Ping, ctx: Context) -> r.Pong:
        return r.Pong(daemon_version="other", pid=0)


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditStore]:
    store = AuditStore(tmp_path)
    yield store
    store.close()


def test_two_handlers_for_one_request_type_are_refused(audit: AuditStore) -> None:
    access = Access(load_settings(environ={}).access)
    with pytest.raises(HandlerTableError, match=r"two handlers for Ping: PingHandlers.ping and OtherPingHandlers.pong"):
        Dispatcher([PingHandlers(), OtherPingHandlers()], access, audit, request_types=(q.Ping,))


def test_a_handler_for_a_type_that_is_not_a_request_is_refused(audit: AuditStore) -> None:
    access = Access(load_settings(environ={}).access)
    with pytest.raises(HandlerTableError, match=r"handlers for types that are not requests: Ping"):
        Dispatcher([PingHandlers()], access, audit, request_types=())
