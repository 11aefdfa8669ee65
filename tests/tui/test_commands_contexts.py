"""`:ctx` and the palette's contexts, against canned answers (two contexts need no second daemon here: the
contexts tests drive real ones): completion, the error for a context that does not exist, the switch."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from textual.command import Command, CommandList, CommandPalette

from daemon.protocol import requests, results
from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient
from modeltui.commands import CommandLine, CommandScreen
from modeltui.screens import DeploymentsScreen
from modeltui.widgets import DeploymentsTable, StatusHeader
from tests.helpers.canned import canned_client
from tests.helpers.fake_client import FakeClient
from tests.helpers.tui import SIZE, until


@dataclass(frozen=True)
class Ctx:
    name: str
    color: str | None = None
    readonly: bool = False


def two_context_app() -> tuple[ModelTuiApp, list[str]]:
    """The App with contexts local and prod-eu, each answered by a fake client; the list records connections."""
    client = FakeClient().answer(requests.ListModels, results.ModelList(items=[], total=0)).answer(
        requests.ListDeployments, results.DeploymentList(items=[]))
    reached: list[str] = []

    async def connect_context(ctx: Ctx) -> DaemonClient:
        reached.append(ctx.name)
        return client.another()

    async def connect() -> DaemonClient:
        reached.append("local")
        return client

    app = ModelTuiApp(connect, contexts=[Ctx("local"), Ctx("prod-eu")], connect_context=connect_context)
    return app, reached


async def test_ctx_completes_refuses_unknown_and_switches() -> None:
    app, reached = two_context_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("colon")
        await until(pilot, lambda: isinstance(app.screen, CommandScreen), "command line")
        line = app.screen
        assert isinstance(line, CommandScreen)
        await pilot.press(*"ctx nope", "enter")
        assert line.error == "no context 'nope': local, prod-eu"
        line.query_one(CommandLine).value = ""
        await pilot.press(*"ctx p", "tab")
        assert line.query_one(CommandLine).value == "ctx prod-eu"
        await pilot.press("enter")
        await until(pilot, lambda: app.context.name == "prod-eu" and app.connection == "connected", "switched")
        assert reached == ["local", "prod-eu"]

        # The palette offers the other context too.
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "palette")
        await pilot.press(*"local")

        def texts() -> list[str]:
            options = app.screen.query_one(CommandList)
            found = [options.get_option_at_index(i) for i in range(options.option_count)]
            return [str(o.hit.text) for o in found if isinstance(o, Command)]

        await until(pilot, lambda: "context local" in texts(), "context in the palette")
        await pilot.press("enter")
        await until(pilot, lambda: app.context.name == "local" and app.connection == "connected", "switched back")


async def test_a_switch_to_a_context_that_never_answers_leaves_nothing_of_the_other() -> None:
    """The deployments view and the header's counts of ``local`` are emptied as soon as ``prod-eu`` is chosen,
    though prod-eu never answers (its rows would otherwise stay under its header for good)."""
    client = canned_client()  # two deployments, one stopped; an alert firing; a run awaiting approval

    async def connect_context(ctx: Ctx) -> DaemonClient:
        await asyncio.Event().wait()  # prod-eu: connecting, for ever
        raise AssertionError("unreachable")

    async def connect() -> DaemonClient:
        return client

    app = ModelTuiApp(connect, contexts=[Ctx("local"), Ctx("prod-eu")], connect_context=connect_context)
    async with app.run_test(size=SIZE) as pilot:
        app.show_view("deployments")
        await until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "the deployments view")
        await until(pilot, lambda: app.screen.query_one(DeploymentsTable).row_count == 2, "local's deployments")
        table = app.screen.query_one(DeploymentsTable)
        bar = app.screen.query_one(StatusHeader)
        await until(pilot, lambda: "1 firing" in bar.text(SIZE[0]), "local's counts")
        app.switch_context("prod-eu")
        await until(pilot, lambda: bar.text(SIZE[0]).startswith(" PROD  prod-eu › deployments"), "prod-eu's header")
        await until(pilot, lambda: table.row_count == 0, "no deployment of local under prod-eu")
        assert table.keys() == []
        assert "firing" not in bar.text(SIZE[0])
        assert app.connection == "connecting"
