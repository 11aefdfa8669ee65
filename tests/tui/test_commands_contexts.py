"""`:ctx` and the palette's contexts, against canned answers (two contexts need no second daemon here: the
contexts tests drive real ones): completion, the error for a context that does not exist, the switch."""

from __future__ import annotations

from dataclasses import dataclass

from textual.command import Command, CommandList, CommandPalette

from daemon.protocol import requests, results
from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient
from modeltui.commands import CommandLine, CommandScreen
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
