"""The fleet view driven with Textual's Pilot against a REAL modeltuid without a cluster (no ZooKeeper): it
says the cluster is not configured, still lists this host's deployments, and tells from the registry what
each should run — following an alias moved with the real CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Footer, Static

from daemon.protocol import results
from modeltui.client import connect
from modeltui.screens import FleetScreen, HelpScreen, ModelsScreen
from modeltui.screens.fleet import DISABLED, DRIFT, REFRESH_SECONDS, THIS_HOST, should_run
from modeltui.widgets import KeyedTable
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import echo_model
from tests.helpers.tui import SIZE, deploy, make_app, push, show_json, undeploy_all, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

COLUMNS = ("host", "name", "ref", "version", "should run", "state", "health", "endpoint", "model")


@pytest.fixture
async def echo2(daemon: DaemonProcess, tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    """The python model ``echo``: v1 (alias production) and v2; whatever a test deploys is removed."""
    push(daemon, echo_model(tmp_path / "echo-v1"), "--alias", "production", "-m", "first")
    push(daemon, echo_model(tmp_path / "echo-v2", note="v2"), "-m", "second")
    yield daemon
    if daemon.proc is not None and daemon.proc.poll() is None:
        async with await connect(daemon.socket) as client:
            await undeploy_all(client)


def broken_model(path: Path) -> Path:
    """A version of ``echo`` whose predict module fails on import: it never gets healthy."""
    echo_model(path, note="v3")
    (path / "predict.py").write_text('raise RuntimeError("this version cannot start")\n')
    return path


def fleet_row(screen: FleetScreen, name: str) -> dict[str, str]:
    """Every column of the deployment's row, the hidden ones too (at 80 columns ref, endpoint, model hide)."""
    table = screen.query_one("#fleet-deployments", KeyedTable)
    shown = table.keys()
    for key in shown:
        row = table.row_of(key)
        if row["name"] == name:
            return row
    raise KeyError(name)


def title(screen: FleetScreen) -> str:
    return str(screen.query_one("#fleet-title", Static).render())


def snapshot(screen: FleetScreen) -> str:
    """The screen as text: title, status and the deployments table's rows."""
    table = screen.query_one("#fleet-deployments", KeyedTable)
    keys = table.keys()
    lines = [title(screen), " | ".join(COLUMNS), *(" | ".join(table.row_of(key).values()) for key in keys)]
    return "\n".join([*lines, str(screen.query_one("#fleet-status", Static).render())])


def test_should_run_resolves_pinned_alias_and_latest_refs() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    summary = results.ModelSummary(
        name="m", description="", created_at=now, updated_at=now, versions=3, latest=3, aliases={"production": 2}
    )
    models: dict[str, results.ModelSummary | None] = {"m": summary, "gone": None}
    assert should_run("m:1", {}) == 1  # pinned: no registry read needed
    assert should_run("m@production", models) == 2
    assert should_run("m@staging", models) is None
    assert should_run("m", models) == 3
    assert should_run("gone@production", models) is None
    assert should_run("other@production", models) == "…"  # not read yet


async def test_fleet_without_cluster_follows_the_alias(echo2: DaemonProcess, tmp_path: Path) -> None:
    d = await deploy(echo2, "echo@production")
    assert d.version == 1
    app = make_app(echo2)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", "connected")
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("F")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "fleet screen")
        screen = app.screen
        assert isinstance(screen, FleetScreen)

        # No ZooKeeper: the view says how to configure it, hides the hosts table, still lists this host.
        await until(pilot, lambda: DISABLED in title(screen), "disabled message")
        assert screen.state == "disabled"
        assert not screen.query_one("#fleet-hosts").display
        await until(pilot, lambda: fleet_row(screen, d.name)["should run"] == "v1", "should run v1")
        row = fleet_row(screen, d.name)
        assert row["host"] == f"{THIS_HOST}*"
        assert row["ref"] == "echo@production"
        assert row["version"] == "v1"
        assert row["state"] == "running"
        assert row["endpoint"] == d.endpoint
        assert row["model"] == "echo"
        assert "all serve what should run" in str(screen.query_one("#fleet-status", Static).render())
        print(snapshot(screen))

        # Fits 80x24: host, name, ref, version, should run and state show without scrolling; the footer is
        # on the last line with every key inside 80 columns.
        table = screen.query_one("#fleet-deployments", KeyedTable)
        assert table.region.right <= 80
        assert table.region.height >= 5
        widths = sum(c.get_render_width(table) for c in table.ordered_columns[:6])
        assert widths <= 80, widths
        footer_widget = screen.query_one(Footer)
        assert footer_widget.region.y == 23
        for key_widget in footer_widget.query("FooterKey"):
            assert key_widget.region.right <= 80, str(key_widget.render())

        # The alias moves (CLI, another process): the column follows it, with no key pressed.
        moved = await asyncio.to_thread(echo2.cli, "alias", "set", "echo", "production", "2", "--reason", "v2")
        assert moved.returncode == 0, moved.stderr
        seen: set[str] = set()

        def follows() -> bool:
            r = fleet_row(screen, d.name)
            seen.add(f"{r['version']} / {r['should run']}")
            return r["should run"].endswith("v2")

        await until(pilot, follows, "should run v2", 15)
        r = fleet_row(screen, d.name)
        # Either the rollout is still on (marked) or it is already done (no mark).
        assert r["should run"] == ("v2" if r["version"] == "v2" else f"{DRIFT} v2"), r
        await until(pilot, lambda: fleet_row(screen, d.name)["version"] == "v2", "rolled out v2", 60)
        await until(pilot, lambda: fleet_row(screen, d.name)["should run"] == "v2", "no mark once rolled out")
        print(sorted(seen))
        print(snapshot(screen))

        # A version that cannot start: the rollout fails, v2 keeps serving, and the row stays marked.
        await asyncio.to_thread(push, echo2, broken_model(tmp_path / "echo-v3"), "-m", "broken")
        await asyncio.to_thread(echo2.cli, "alias", "set", "echo", "production", "3", "--reason", "v3")
        assert show_json(echo2, "echo@production")["version"]["number"] == 3
        await until(pilot, lambda: fleet_row(screen, d.name)["should run"] == f"{DRIFT} v3", "marked v3", 15)
        await until(pilot, lambda: fleet_row(screen, d.name)["version"] == "v2", "v2 keeps serving", 60)
        await pilot.pause(REFRESH_SECONDS + 0.5)
        assert fleet_row(screen, d.name)["should run"] == f"{DRIFT} v3"
        assert "1 not serving what should run" in str(screen.query_one("#fleet-status", Static).render())
        print(snapshot(screen))

        # A timer re-asks while the view is shown; escape goes back; the help screen lists the key.
        answers = screen.answers
        await until(pilot, lambda: screen.answers > answers, "refreshed by the timer", 6)
        await pilot.press("escape")
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = " ".join(str(w.render()) for w in app.screen.query(Static))
        assert "F fleet" in shown
        assert "Fleet: every host of the cluster" in shown
