"""Confirmations against canned answers (tests/helpers/canned.py): an approval names the alias that moves and
the deployments that roll out, and only the deployments that follow that alias count. The real-daemon proof
is tests/tui/test_confirm.py."""

from __future__ import annotations

from textual.content import Content

from daemon.protocol import requests
from daemon.protocol import results as r
from modeltui.screens import ConfirmDialog, MaintenanceScreen, ReasonDialog
from modeltui.screens.dialogs import followers, rollback_question, rollout_text
from tests.helpers.canned import canned_client, deployment
from tests.helpers.fake_client import fake_app
from tests.helpers.tui import SIZE, until


def test_only_the_deployments_that_follow_the_alias_roll_out() -> None:
    listed = [
        deployment("churn-b", "churn@production", 2, 8085),
        deployment("churn-a", "churn@production", 2, 8081),
        deployment("churn-pinned", "churn:2", 2, 8087),
        deployment("churn-staging", "churn@staging", 3, 8089),
        deployment("fraud", "fraud@production", 1, 8091),
    ]
    assert [d.name for d in followers(listed, "churn", "production")] == ["churn-a", "churn-b"]
    assert followers(listed, "iris", "production") == []
    assert rollout_text("iris", "production", "v2", []) == "No deployment follows iris@production: nothing rolls out."
    many = [deployment(f"d{i}", "churn@production", 2, 9000 + 2 * i) for i in range(8)]
    assert rollout_text("churn", "production", "v3", many).endswith("and 2 more.")



def test_a_rollback_question_shows_names_as_they_are() -> None:
    """The one rollback flow (model view and deployments view) puts names in its markup literally: a ``[`` in
    a name neither breaks the question nor restyles it."""
    following = [deployment("churn-a", "churn@production", 2, 8081)]
    question = rollback_question("churn[b]", "pr[red]od", "v2", "v1", following)
    plain = Content.from_markup(question).plain
    assert plain == ("Roll pr[red]od of churn[b] back from v2 to v1?\n"
                     "1 deployment(s) follow churn[b]@pr[red]od and roll out v1: churn-a."), plain


async def test_approval_names_the_alias_move_and_the_rollout_and_enter_cancels() -> None:
    client = canned_client()
    client.answer(requests.MaintainPolicyRequest,
                  r.MaintainPolicyInfo(model="churn", policy={"alias": "production", "promote": "approve"},
                                       champion=2))
    app = fake_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        screen = MaintenanceScreen()
        app.push_screen(screen)
        await until(pilot, lambda: screen.current is not None and screen.current.id == 2, "run 2 highlighted")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ReasonDialog), "reason dialog")
        await pilot.press(*"ok", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        text = str(app.screen.query_one("#question").render())
        assert "Approve run 2 of churn (f1 0.810 → 0.880)?" in text, text
        assert "production moves from v2 to v3." in text, text
        assert "1 deployment(s) follow churn@production and roll out v3: churn-production." in text, text
        await pilot.press("enter")  # the focus starts on Cancel
        await until(pilot, lambda: app.screen is screen, "back on the runs")
        await pilot.pause(0.2)
        assert client.sent_of(requests.MaintainDecide) == []
