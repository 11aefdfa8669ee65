"""The models view over a canned client (beside the real-daemon tests of test_scale.py): another context
leaves no row of the old one on screen, and
the view asks for its rows again by itself."""

from __future__ import annotations

from modeltui.screens import ModelsScreen
from tests.helpers.canned import MODELS, canned_client
from tests.helpers.fake_client import fake_app
from tests.helpers.snapshots import screen_text
from tests.helpers.tui import SIZE, until


async def test_another_context_shows_none_of_the_old_rows() -> None:
    app = fake_app(canned_client())
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: MODELS[0].name in screen_text(app), "the canned models")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        screen.context_changed("prod-east")
        # what the next frame draws (the fake answers the next ask at once; a real switch waits to connect)
        assert screen.table.source.count == 0
        assert "connecting to prod-east…" in str(screen.query_one("#page-status").render())
        await until(pilot, lambda: MODELS[0].name in screen_text(app), "the models, asked again by the view")
