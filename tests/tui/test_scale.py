"""10,000 models in a real daemon (pushed through its socket): the models view paints its first rows at once,
reaches the real end of the list by key, and filters and sorts on the daemon over every column."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot

from daemon.protocol import requests
from daemon.protocol.errors import ErrorCode, ProtocolError
from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient, connect
from modeltui.screens import ModelScreen, ModelsScreen
from modeltui.screens import model as model_screen
from modeltui.screens import models as models_screen
from modeltui.widgets import VersionsTable
from tests.helpers.bulk_models import ARTIFACT, MANIFEST, _upload, bulk_daemon, model_name
from tests.helpers.daemon import DaemonProcess
from tests.helpers.snapshots import screen_text
from tests.helpers.tui import SIZE, make_app, query, until

COUNT = 10_000


@pytest.fixture(scope="module")
def many_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with bulk_daemon(tmp_path_factory.mktemp("bulk"), COUNT) as (daemon, _seconds):
        yield daemon


def names_on_screen(app: App[Any]) -> list[str]:
    """The model names the table shows, top to bottom."""
    return re.findall(r"bulk-\d{5}", screen_text(app))


def status(app: ModelTuiApp) -> str:
    return str(app.screen.query_one("#page-status").render())


async def first_row_is(pilot: Pilot[None], name: str) -> None:
    await until(pilot, lambda: names_on_screen(pilot.app)[:1] == [name], f"{name} on the first row", timeout=20)


async def test_first_paint_and_the_real_end_of_the_list(many_models: DaemonProcess) -> None:
    started = time.monotonic()
    app = make_app(many_models)
    async with app.run_test(size=SIZE) as pilot:
        await first_row_is(pilot, model_name(1))
        first_paint = time.monotonic() - started
        assert first_paint < 10, f"first paint took {first_paint:.1f} s"
        await until(pilot, lambda: "of 10000" in status(app), "the count of every model")
        assert "…" not in screen_text(app)  # the first screenful came with the first answer

        await pilot.press("end")
        await until(pilot, lambda: names_on_screen(app)[-1:] == [model_name(COUNT)], "the last model, by End")
        assert status(app).endswith("-10000 of 10000")
        await pilot.press("g")
        await first_row_is(pilot, model_name(1))
        await pilot.press("G", "pageup", "k")
        await until(pilot, lambda: model_name(COUNT - 20) in names_on_screen(app) and "…" not in screen_text(app),
                    "the rows a page up from the end, fetched as they came on screen")


async def test_filter_any_column_inverse_and_sort_on_the_daemon(many_models: DaemonProcess,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProtocolError, match=r"bad regex '\(prod': missing \)") as bad:
        await query(many_models, requests.ListModels(pattern="(prod"))
    assert bad.value.code == ErrorCode.INVALID
    filters: list[str] = []

    async def counting() -> DaemonClient:
        """The App's client, counting the filtered lists it asks for."""
        client = await connect(many_models.socket)
        call = client.call

        async def counted(request: Any, **kwargs: Any) -> Any:
            if isinstance(request, requests.ListModels) and request.pattern:
                filters.append(request.pattern)
            return await call(request, **kwargs)

        client.call = counted  # type: ignore[method-assign]
        return client

    # keys a loaded machine presses further apart than a typist's still count as one burst
    monkeypatch.setattr(models_screen, "TYPING_SECONDS", 1.0)
    app = ModelTuiApp(counting)
    async with app.run_test(size=SIZE) as pilot:
        await first_row_is(pilot, model_name(1))
        await pilot.press("slash", *"production")  # an alias: not in any name
        await first_row_is(pilot, model_name(10))
        await until(pilot, lambda: "of 1000 matching 'production'" in status(app), "the whole word asked")
        assert len(filters) < 5, f"one query a keystroke: {filters}"
        assert filters[-1] == "production"
        assert "1000 of 10000" in screen_text(app)  # the filter line's count
        assert all(int(name[5:]) % 10 == 0 for name in names_on_screen(app))

        await pilot.press("home", "exclamation_mark")  # /!production: every model without the alias
        await first_row_is(pilot, model_name(1))
        assert "of 9000 matching '!production'" in status(app)
        assert model_name(10) not in names_on_screen(app)
        await pilot.press("enter", "escape")
        await until(pilot, lambda: "of 10000" in status(app), "the filter cleared")

        await pilot.press("minus")  # reverse the sort: the last name first
        await first_row_is(pilot, model_name(COUNT))
        assert "name ▼" in screen_text(app)
        await pilot.press("greater_than_sign", "minus")  # by versions, most first: every 7th has two
        await first_row_is(pilot, model_name(9996))
        assert "versions ▼" in screen_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ModelScreen), "the model opened")
        assert isinstance(app.screen, ModelScreen)
        assert app.screen.model_name == model_name(9996)
        await pilot.press("escape")
        assert isinstance(app.screen, ModelsScreen)

        # Another client describes a model: the daemon's index has it at once, in the description column.
        await query(many_models, requests.DescribeModel(name=model_name(4321), description="a needle in the hay"))
        await pilot.press("slash", *"needle")
        await first_row_is(pilot, model_name(4321))
        assert "of 1 matching 'needle'" in status(app)

        # A filter the daemon refuses (the filter line checks the regex first; a daemon of another Python may
        # still refuse one): its message in the filter line, and the list before it stays, no `…` rows.
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        screen.filter_text = "(needle"
        await until(pilot, lambda: "missing )" in screen_text(app), "the daemon's message in the filter line")
        assert model_name(4321) in names_on_screen(app)
        assert "…" not in screen_text(app)
        assert "of 1 matching 'needle'" in status(app)


async def push_versions(daemon: DaemonProcess, name: str, count: int) -> None:
    """``count`` more versions of model ``name``, each a different artifact (a version is its content)."""
    client = await connect(daemon.socket, client_name="versions-loader")
    try:
        for i in range(count):
            artifact = ARTIFACT + f"version {i}\n".encode()
            files = await _upload(client, {"model.bin": artifact, "modeltui.toml": MANIFEST})
            await client.call(requests.Push(name=name, files=files, message=f"extra {i}"))
    finally:
        await client.close()


async def test_every_version_of_a_model_in_one_list(many_models: DaemonProcess,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A model with more versions than one versions.log page: the table holds them all (fetched page after
    page), G reaches v1 and g the newest; past MAX_VERSIONS the status says how many are left out."""
    name = model_name(9996)  # already first by versions, the other tests' orders stay the same
    await push_versions(many_models, name, 248)
    total = 250
    monkeypatch.setattr(model_screen, "LOG_PAGE", 100)  # three pages
    app = make_app(many_models)
    async with app.run_test(size=SIZE) as pilot:
        await first_row_is(pilot, model_name(1))
        app.push_screen(ModelScreen(name))
        await until(pilot, lambda: f"versions 1-{total} of {total}" in screen_text(app), "every version", timeout=30)
        table = app.screen.query_one(VersionsTable)
        assert table.row_count == total
        await pilot.press("G")
        await until(pilot, lambda: table.current_version == 1 and " v1 " in screen_text(app), "v1 on screen by G")
        await pilot.press("g")
        await until(pilot, lambda: table.current_version == total and f" v{total} " in screen_text(app), "the newest")

        monkeypatch.setattr(model_screen, "MAX_VERSIONS", 120)
        await pilot.press("escape")
        app.push_screen(ModelScreen(name))
        await until(pilot, lambda: f"newest 120 of {total} versions" in screen_text(app), "the bound, said")
        assert app.screen.query_one(VersionsTable).row_count == 120
