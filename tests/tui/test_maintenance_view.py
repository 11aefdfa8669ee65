"""The maintenance view driven with Textual's Pilot against a REAL modeltuid: a run started with the real CLI
(``promote = approve``, the example's own training on shifted data) waits for approval with both scores; the
operator approves it in the TUI with a reason and a confirmation, the run shows promoted and the alias moved
(the CLI says so). In read-only mode approve, reject and run-now are absent from the footer and their keys
do nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Footer, Static

from modeltui.screens import ConfirmDialog, HelpScreen, MaintenanceScreen, PolicyDialog, ReasonDialog
from modeltui.widgets import KeyedTable
from tests.helpers.daemon import DaemonProcess
from tests.helpers.example_data import EXAMPLE_MODEL, shifted_model
from tests.helpers.snapshots import screen_text
from tests.helpers.tui import SIZE, make_app, rows, show_json, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

COLUMNS = ("run", "model", "state", "trigger", "metric", "started", "reason")


@pytest.fixture
def awaiting(daemon: DaemonProcess, example_dir: Path, tmp_path: Path) -> tuple[DaemonProcess, dict[str, Any]]:
    """breast-cancer v1 (production), policy promote=approve, one finished run awaiting approval (v2)."""
    d = daemon
    pushed = d.cli("push", str(shifted_model(example_dir, tmp_path)), "--alias", "production")
    assert pushed.returncode == 0, pushed.stderr
    policy = ["data=fresh_train.csv", "holdout=fresh_holdout.csv", "target=target", "metric=f1"]
    done = d.cli("maintain", "set", EXAMPLE_MODEL, *policy, "timeout_seconds=120", "promote=approve")
    assert done.returncode == 0, done.stderr
    ran = d.cli("maintain", "run-now", EXAMPLE_MODEL, "--wait", "--json")
    assert ran.returncode == 0, ran.stderr
    run: dict[str, Any] = json.loads(ran.stdout)
    assert run["state"] == "awaiting_approval", run
    return d, run


def run_row(screen: MaintenanceScreen, run: int) -> dict[str, str]:
    """Every column of the run's row, shown or hidden for room."""
    return screen.query_one("#maintenance-runs", KeyedTable).row_of(str(run))


def detail(screen: MaintenanceScreen) -> str:
    return str(screen.query_one("#maintenance-detail", Static).render())


def snapshot(screen: MaintenanceScreen) -> str:
    """The screen as text: title, the runs table, the detail pane, the status line."""
    table = rows(screen.query_one("#maintenance-runs", KeyedTable))
    title = str(screen.query_one("#maintenance-title", Static).render())
    status = str(screen.query_one("#maintenance-status", Static).render())
    return "\n".join([title, " | ".join(COLUMNS), *(" | ".join(r) for r in table), "-" * 40, detail(screen), status])


async def test_approve_a_run_awaiting_approval(awaiting: tuple[DaemonProcess, dict[str, Any]]) -> None:
    d, run = awaiting
    run_id = run["id"]
    champion, challenger = f"{run['champion_score']:.3f}", f"{run['challenger_score']:.3f}"
    app = make_app(d)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("M")
        await until(pilot, lambda: isinstance(app.screen, MaintenanceScreen), "maintenance screen")
        screen = app.screen
        assert isinstance(screen, MaintenanceScreen)

        await until(pilot, lambda: run_row(screen, run_id)["state"] == "awaiting_approval", "the run listed")
        row = run_row(screen, run_id)
        assert row["model"] == EXAMPLE_MODEL
        assert row["metric"] == f"f1 {champion} → {challenger}"
        assert row["trigger"].startswith("manual")
        await until(pilot, lambda: "steps" in detail(screen), "the run's detail")
        text = detail(screen)
        assert "awaiting_approval" in text
        assert champion in text
        assert challenger in text
        assert "v1" in text
        assert "v2" in text
        assert "verdict" in text
        assert "better" in text
        for step in ("evaluate_champion", "train", "evaluate_challenger", "gate", "push"):
            assert step in text, step
        assert "awaiting approval" in str(screen.query_one("#maintenance-title", Static).render())
        print(snapshot(screen))

        # Fits 80x24: the table and the detail pane on screen, every footer key within 80 columns.
        table = screen.query_one("#maintenance-runs", KeyedTable)
        assert table.region.right <= 80
        assert table.region.height >= 3
        assert screen.query_one("#maintenance-detail-box").region.bottom <= 23
        footer = screen.query_one(Footer)
        assert footer.region.y == 23
        keys = " ".join(str(w.render()) for w in footer.query("FooterKey"))
        for word in ("? Help", "Approve", "Reject", "Run now"):  # Cancel, Policy, R refresh: in ? help
            assert word in keys, keys
        for key_widget in footer.query("FooterKey"):
            assert key_widget.region.right <= 80, str(key_widget.render())

        # p: the effective policy, overrides marked, in a modal that fits.
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PolicyDialog), "policy dialog")
        policy = str(app.screen.query_one("#policy-text", Static).render())
        assert "promote" in policy
        assert "approve" in policy
        assert "(set)" in policy
        assert app.screen.query_one(".dialog").region.bottom <= 24
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, "policy closed")

        # a: a reason, then a confirmation; the run shows promoted.
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ReasonDialog), "reason dialog")
        dialog = app.screen.query_one(".dialog")
        assert dialog.region.right <= 80
        assert dialog.region.bottom <= 24
        await pilot.press(*"lgtm", "enter")  # few keys: each press waits for the app to idle
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await pilot.press("y")
        await until(pilot, lambda: run_row(screen, run_id)["state"] == "promoted", "promoted", timeout=20)
        await until(pilot, lambda: "promoted" in detail(screen) and "promote " in detail(screen), "detail")
        print(snapshot(screen))

        # Approving again is refused politely (no dialog).
        await pilot.press("a")
        await pilot.pause(0.2)
        assert app.screen is screen
    got = await asyncio.to_thread(show_json, d, f"{EXAMPLE_MODEL}@production")
    assert got["version"]["number"] == 2


async def test_cancel_a_run_awaiting_approval(awaiting: tuple[DaemonProcess, dict[str, Any]]) -> None:
    d, run = awaiting
    app = make_app(d)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("M")
        await until(pilot, lambda: isinstance(app.screen, MaintenanceScreen), "maintenance screen")
        screen = app.screen
        assert isinstance(screen, MaintenanceScreen)
        await until(pilot, lambda: run_row(screen, run["id"])["state"] == "awaiting_approval", "the run listed")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ReasonDialog), "reason dialog")
        await pilot.press(*"stale", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await pilot.press("y")
        await until(pilot, lambda: run_row(screen, run["id"])["state"] == "cancelled", "cancelled", timeout=20)
        assert "stale" in run_row(screen, run["id"])["reason"]
        # At 80 columns the reason is on screen (cut to the room left; trigger and started hide first).
        lines = screen_text(app).splitlines()
        header = next(line for line in lines if line.lstrip().startswith("run "))
        row = next(line for line in lines if line.lstrip().startswith(f"{run['id']} ") and "cancelled" in line)
        assert "reason" in header, header
        assert run_row(screen, run["id"])["reason"][:8] in row, row
        # Nothing left to cancel: refused politely (no dialog).
        await pilot.press("c")
        await pilot.pause(0.2)
        assert app.screen is screen
    got = await asyncio.to_thread(show_json, d, f"{EXAMPLE_MODEL}@production")
    assert got["version"]["number"] == 1  # never promoted


async def test_readonly_hides_the_actions(daemon: DaemonProcess) -> None:
    app = make_app(daemon, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("M")
        await until(pilot, lambda: isinstance(app.screen, MaintenanceScreen), "maintenance screen")
        screen = app.screen
        assert isinstance(screen, MaintenanceScreen)
        status = screen.query_one("#maintenance-status", Static)
        await until(pilot, lambda: str(status.render()) == "no maintenance runs yet", "the empty list")
        assert "no run selected" in detail(screen)
        shown = {b.binding.action for b in screen.active_bindings.values()}
        assert "policy" in shown
        assert not {"approve", "reject", "run_now", "cancel_run"} & shown
        keys = " ".join(str(w.render()) for w in screen.query_one(Footer).query("FooterKey"))
        assert "Approve" not in keys
        assert "Reject" not in keys
        assert "Run now" not in keys
        for key in ("a", "x", "r", "c"):
            await pilot.press(key)
            await pilot.pause(0.2)
            assert app.screen is screen, key
        # The help lists the view and its global key.
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        text = " ".join(str(s.render()) for s in app.screen.query("Static"))
        assert "Maintenance" in text
        assert "M maintenance" in text
