"""The fan-out (modeltui.fanout) with canned clients: every host is asked at once, a host that hangs or
cannot be reached delays nobody else, and an unreachable host is tried again only after its backoff; the
hosts view re-asks only the current host on its events. The real-daemon proof is tests/tui/test_hosts.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from daemon.protocol import requests, results
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.events import DeploymentEvent
from modeltui import fanout
from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient, DaemonUnavailable
from modeltui.contexts import Context
from modeltui.fanout import FanOut
from modeltui.screens.hosts import FanOutCall, HostAnswer, HostsScreen, HostsTable
from tests.helpers import canned
from tests.helpers.fake_client import FakeClient
from tests.helpers.tui import SIZE, rows, until


@dataclass(frozen=True)
class Ctx:
    name: str


class Screen:
    """Stands in for the screen that asked (only ``is_attached`` and ``app`` are read)."""

    is_attached = True
    app = None


def fake_app_factory(client: FakeClient) -> Callable[[], Awaitable[DaemonClient]]:
    async def connect() -> DaemonClient:
        client.closed.clear()
        return client

    return connect


def listing() -> results.DeploymentList:
    return results.DeploymentList(items=[])


async def settled(until_true: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Let the loop run until ``until_true()`` (a generous deadline: only a failure waits for it)."""
    async with asyncio.timeout(timeout):
        while not until_true():
            await asyncio.sleep(0.01)
    assert until_true(), what


async def test_every_host_answers_as_it_comes_and_the_unreachable_wait_their_backoff() -> None:
    own = FakeClient().answer(requests.ListDeployments, listing())
    b = FakeClient().answer(requests.ListDeployments, listing())
    refusing = FakeClient().answer(requests.ListDeployments, ProtocolError(ErrorCode.FORBIDDEN, "no"))
    opened: list[str] = []
    hang = asyncio.Event()

    async def opener(ctx: Any) -> DaemonClient:
        opened.append(ctx.name)
        if ctx.name == "slow":
            await hang.wait()  # an ssh that connects and never answers, until the test lets it fail
            raise TimeoutError
        if ctx.name == "down":
            raise DaemonUnavailable("no daemon answers on /nowhere.sock")
        return {"b": b, "refusing": refusing}[ctx.name]

    now = [100.0]
    contexts = [Ctx("local"), Ctx("slow"), Ctx("b"), Ctx("down"), Ctx("refusing")]
    fan = FanOut(lambda: contexts, lambda: ("local", own), opener, timeout=60, clock=lambda: now[0])
    answers: list[HostAnswer[Any]] = []
    call = FanOutCall(Screen(), requests.ListDeployments(), answers.append, group="list")  # type: ignore[arg-type]
    fan.register(call.screen)
    asking = asyncio.create_task(fan.ask(call))
    # Every other host answers while the slow one still hangs.
    await settled(lambda: len(answers) == 4, "the four others' answers")
    by_host = {a.context: a for a in answers}
    assert "slow" not in by_host
    assert by_host["local"].result is not None
    assert by_host["b"].result is not None
    assert not by_host["down"].reachable
    assert "no daemon answers" in by_host["down"].error
    assert by_host["refusing"].reachable
    assert by_host["refusing"].error == "no"
    assert own.sent_of(requests.ListDeployments)
    assert b.sent_of(requests.ListDeployments)
    hang.set()
    await asking
    assert answers[-1].context == "slow"
    assert not answers[-1].reachable
    assert answers[-1].error == "no answer within 60s"

    # Asked again at once: the unreachable hosts answer their last error without a new try (backoff), the
    # others over the clients already open.
    opened.clear()
    answers.clear()
    await fan.ask(call)
    assert opened == []
    assert {a.context: a.reachable for a in answers} == {
        "local": True, "slow": False, "b": True, "down": False, "refusing": True
    }

    # After the backoff, the host is tried again; only the current context's client survives a release.
    now[0] += fanout.BACKOFF_FIRST
    answers.clear()
    other = Screen()
    fan.register(other)
    await fan.ask(FanOutCall(other, requests.ListDeployments(), answers.append, only=["down"]))  # type: ignore[arg-type]
    assert opened == ["down"]
    assert [a.context for a in answers] == ["down"]
    await fan.release(call.screen)
    assert not b.closed.is_set()  # another view still uses the clients
    await fan.release(other)
    assert b.closed.is_set()
    assert refusing.closed.is_set()
    assert not own.closed.is_set()


async def test_a_host_that_hangs_ends_with_the_timeout() -> None:
    async def opener(ctx: Any) -> DaemonClient:
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")

    fan = FanOut(lambda: [Ctx("slow")], lambda: ("local", None), opener, timeout=0.05)
    answers: list[HostAnswer[Any]] = []
    call = FanOutCall(Screen(), requests.ListDeployments(), answers.append)  # type: ignore[arg-type]
    fan.register(call.screen)
    await fan.ask(call)
    assert [(a.context, a.reachable, a.error) for a in answers] == [("slow", False, "no answer within 0.05s")]


async def test_a_view_released_before_or_while_asking_leaves_no_client_open() -> None:
    """Leaving the view while a host still connects: the client that connects afterwards is closed at once
    (nobody would close it later); a call whose view was released before its worker ran opens nothing."""
    late = FakeClient().answer(requests.ListDeployments, listing())
    go = asyncio.Event()
    opened: list[str] = []

    async def opener(ctx: Any) -> DaemonClient:
        opened.append(ctx.name)
        await go.wait()
        return late

    fan = FanOut(lambda: [Ctx("local"), Ctx("b")], lambda: ("local", None), opener, timeout=60)
    answers: list[HostAnswer[Any]] = []
    call = FanOutCall(Screen(), requests.ListDeployments(), answers.append)  # type: ignore[arg-type]
    fan.register(call.screen)
    asking = asyncio.create_task(fan.ask(call))
    await settled(lambda: opened == ["b"], "b being connected")
    await fan.release(call.screen)  # the view goes while b connects
    go.set()
    await asking
    assert late.closed.is_set()
    assert not fan.hosts
    assert [a.context for a in answers] == ["local"]  # nothing more for the view that is gone

    # The release was handled before the call's worker started: nothing is opened for it.
    opened.clear()
    await fan.ask(call)
    assert opened == []
    assert not fan.hosts


async def test_the_current_hosts_events_refresh_it_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hosts view with canned clients: a deployment event of the current context re-asks that context at
    once (no poll in between), and the other host is not asked again for it."""
    monkeypatch.setattr(HostsScreen, "POLL_SECONDS", 600.0)  # only the event may cause the second ask
    here = canned.canned_client()
    there = FakeClient().answer(requests.ListDeployments, results.DeploymentList(
        items=[canned.deployment("spam-b", "spam@production", 3, 9001)]))
    extra = results.DeploymentList(
        items=[*canned.deployments(), canned.deployment("new-one", "new@production", 1, 9003)]
    )

    async def connect_context(ctx: Any) -> DaemonClient:
        return there

    app = ModelTuiApp(fake_app_factory(here), contexts=[Context("a"), Context("b")], context="a")
    app.fanout.opener = connect_context
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        app.show_view("hosts")
        await until(pilot, lambda: app.screen.query_one(HostsTable).row_count == 3, "both hosts' rows")
        table = app.screen.query_one(HostsTable)
        assert [r[:2] for r in rows(table)] == [
            ["a", "churn-production"], ["a", "fraud-production"], ["b", "spam-b"]
        ]
        asked_there = len(there.sent_of(requests.ListDeployments))
        here.answer(requests.ListDeployments, extra)
        here.push(DeploymentEvent(kind="created", deployment="new-one"))
        await until(pilot, lambda: table.row_count == 4, "the new deployment")
        assert ["a", "new-one"] in [r[:2] for r in rows(table)]
        assert len(there.sent_of(requests.ListDeployments)) == asked_there
