"""Command mode (``:``) and the command palette (ctrl+p) driven with Textual's Pilot against a REAL modeltuid
with two real deployments (process backend): what a k9s user types, and what the screen then shows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.command import Command, CommandList, CommandPalette
from textual.pilot import Pilot

from modeltui.app import ModelTuiApp
from modeltui.client import connect
from modeltui.commands import CommandLine, CommandScreen
from modeltui.screens import DeploymentScreen, DeploymentsScreen, ModelScreen, ModelsScreen
from modeltui.widgets import DeploymentsTable
from tests.helpers.bulk_models import load_models
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import echo_model
from tests.helpers.tui import SIZE, deploy, make_app, push, rows, undeploy_all, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def two_deployed(module_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """Models iris and fraud (production alias), each deployed once: iris-production, fraud-production."""
    base = tmp_path_factory.mktemp("commands")
    for name in ("iris", "fraud"):
        push(module_daemon, echo_model(base / name, name), "--alias", "production")

    async def deploy_both() -> None:
        await asyncio.gather(deploy(module_daemon, "iris@production"), deploy(module_daemon, "fraud@production"))

    asyncio.run(deploy_both())
    yield module_daemon

    async def undeploy() -> None:
        async with await connect(module_daemon.socket) as client:
            await undeploy_all(client)

    asyncio.run(undeploy())


async def open_line(pilot: Pilot[None]) -> CommandScreen:
    await pilot.press("colon")
    await until(pilot, lambda: isinstance(pilot.app.screen, CommandScreen), "command line")
    screen = pilot.app.screen
    assert isinstance(screen, CommandScreen)
    return screen


def shown_deployments(app: ModelTuiApp) -> list[str]:
    return [row[0] for row in rows(app.screen.query_one(DeploymentsTable))]


async def test_command_line_opens_views_filtered_completes_and_refuses_nonsense(two_deployed: DaemonProcess) -> None:
    app = make_app(two_deployed)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")

        # The line sits at the bottom of the 80x24 screen; the hint offers the commands as you type.
        line = await open_line(pilot)
        box = line.query_one("#command-box")
        assert box.region.bottom == 24
        await pilot.press("d", "e")
        assert str(line.hint.render()) == "deploy"
        await pilot.press("tab")
        assert line.query_one(CommandLine).value == "deploy "
        await pilot.press(*"/iris", "enter")
        await until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "deployments view")
        await until(pilot, lambda: shown_deployments(app) == ["iris-production"], "only iris's deployment")
        # A state: the deployments in it (both run; none is stopped).
        await open_line(pilot)
        await pilot.press(*"dp state=stopped", "enter")
        await until(pilot, lambda: shown_deployments(app) == [], "no stopped deployment")
        await open_line(pilot)
        await pilot.press(*"dp state=running", "enter")
        await until(pilot, lambda: sorted(shown_deployments(app)) == ["fraud-production", "iris-production"],
                    "both running")

        # An unknown command or a bad regex leaves the line open with the reason on it.
        line = await open_line(pilot)
        await pilot.press(*"deplyo", "enter")
        assert isinstance(app.screen, CommandScreen)
        assert line.error is not None
        assert "did you mean :deploy" in line.error
        line.query_one(CommandLine).value = "deploy /fr(aud"
        await pilot.press("enter")
        assert line.error is not None
        assert "bad regex" in line.error
        assert isinstance(app.screen, CommandScreen)
        # An option the view would not honour is refused on the line, not silently dropped: @HOST outside
        # :deploy and :hosts, a host that is no context, a filter and a state where only one would apply.
        for text, reason in (("alerts @local", "@HOST applies to :deploy and :hosts"),
                             ("deploy @nowhere", "no host 'nowhere': the hosts are the contexts local"),
                             ("deploy /iris state=running", "/REGEX and state= together")):
            line.query_one(CommandLine).value = text
            await pilot.press("enter")
            assert isinstance(app.screen, CommandScreen), text
            assert line.error is not None
            assert reason in line.error, (text, line.error)
        # esc cancels: the view under it is unchanged.
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back to deployments")

        # Up recalls this session's last command; logs completes deployment names (Tab) and opens the log.
        line = await open_line(pilot)
        await pilot.press("up", "up", "up")
        assert line.query_one(CommandLine).value == "deploy /iris"
        await pilot.press("down")
        assert line.query_one(CommandLine).value == "dp state=stopped"
        line.query_one(CommandLine).value = ""
        await pilot.press(*"logs fr")
        await until(pilot, lambda: "fraud-production" in str(line.hint.render()), "name offered")
        await pilot.press("tab", "enter")
        await until(pilot, lambda: isinstance(app.screen, DeploymentScreen), "the deployment's log")
        assert isinstance(app.screen, DeploymentScreen)
        assert app.screen.deployment_name == "fraud-production"

        # :models goes back to the models list.
        await open_line(pilot)
        await pilot.press(*"models", "enter")
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen), "models view")


async def palette_texts(pilot: Pilot[None], query: str, expected: str) -> list[str]:
    """Type ``query`` into the open palette and wait until a hit reads ``expected``."""
    palette = pilot.app.screen
    assert isinstance(palette, CommandPalette)
    await pilot.press(*query)

    def texts() -> list[str]:
        options = palette.query_one(CommandList)
        found = [options.get_option_at_index(i) for i in range(options.option_count)]
        return [str(option.hit.text) for option in found if isinstance(option, Command)]

    await until(pilot, lambda: expected in texts(), f"palette hit {expected!r}")
    return texts()


async def test_palette_lists_views_actions_and_objects(two_deployed: DaemonProcess) -> None:
    app = make_app(two_deployed)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "palette")
        found = await palette_texts(pilot, "deploy", "deployments view")
        assert "Deployments" in found  # the models view's own key, by its description
        assert "deployment iris-production (iris)" in found

        # A model's name finds the model and its deployments; choosing the model opens it.
        app.screen.query_one("CommandInput").value = ""  # type: ignore[attr-defined]
        found = await palette_texts(pilot, "iris", "model iris")
        assert "deployment iris-production (iris)" in found
        assert "model fraud" not in found
        options = app.screen.query_one(CommandList)
        options.highlighted = found.index("model iris")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ModelScreen), "model screen")
        assert isinstance(app.screen, ModelScreen)
        assert app.screen.model_name == "iris"


async def test_palette_fuzzy_finds_a_model_beyond_the_first_twenty(two_deployed: DaemonProcess,
                                                                   tmp_path: Path) -> None:
    """The daemon is asked with the typed letters as a subsequence: "brcn" finds clinic-breast-cancer though
    25 models come before it by name and none holds "brcn" as such."""
    await load_models(two_deployed.socket, 25)
    push(two_deployed, echo_model(tmp_path / "bc", "clinic-breast-cancer"))
    app = make_app(two_deployed)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "palette")
        app.screen.query_one("CommandInput").value = "brcn"  # type: ignore[attr-defined]  # one search, no "br"
        found = await palette_texts(pilot, "", "model clinic-breast-cancer")
        assert "model bulk-00001" not in found
