"""10,000 models in a real daemon (pushed through its socket): the models view paints its first rows at once,
reaches the real end of the list by key, and filters and sorts on the daemon over every column."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot

from daemon.protocol import requests
from daemon.protocol.errors import ErrorCode, ProtocolError
from modeltui.app import ModelTuiApp
from modeltui.screens import ModelScreen, ModelsScreen
from tests.helpers.bulk_models import bulk_daemon, model_name
from tests.helpers.daemon import DaemonProcess
from tests.helpers.snapshots import screen_text
from tests.helpers.tui import SIZE, make_app, query, until

COUNT = 10_000


@pytest.fixture(scope="module")
def many_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with bulk_daemon(tmp_path_factory.mktemp("bulk"), COUNT) as (daemon, _seconds):
        yield daemon


def names_on_screen(app: ModelTuiApp) -> list[str]:
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


async def test_filter_any_column_inverse_and_sort_on_the_daemon(many_models: DaemonProcess) -> None:
    with pytest.raises(ProtocolError, match=r"bad regex '\(prod': missing \)") as bad:
        await query(many_models, requests.ListModels(pattern="(prod"))
    assert bad.value.code == ErrorCode.INVALID
    app = make_app(many_models)
    async with app.run_test(size=SIZE) as pilot:
        await first_row_is(pilot, model_name(1))
        await pilot.press("slash", *"production")  # an alias: not in any name
        await first_row_is(pilot, model_name(10))
        assert "of 1000 matching 'production'" in status(app)
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
