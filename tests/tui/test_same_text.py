"""The TUI and the CLI say the same thing the same way: for one deployment and one version, the Deployments
table and ``modeltui ps`` show the same uptime, the Versions table and ``modeltui log`` the same creation
time and size, and a state word has the same tone in both (both go through modeltui.format)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console, RenderableType
from textual.app import App, ComposeResult

from daemon.protocol import results as r
from daemon.protocol.deploy import ContainerOptions, DeploymentInfo
from modeltui import format as fmt
from modeltui.cli import render
from modeltui.widgets import DeploymentsTable, VersionsTable
from tests.helpers.tui import rows

CREATED = datetime(2026, 11, 27, 14, 30, 5, tzinfo=UTC)


def deployment(name: str, up_for: timedelta, state: str = "running") -> DeploymentInfo:
    return DeploymentInfo(
        name=name, ref="m@production", model="m", version=3, backend="process", desired="running", state=state,
        health="healthy", endpoint="http://127.0.0.1:40123", port=40123, restarts=0, message="", env={},
        options=ContainerOptions(), instance=None, created_at=CREATED, updated_at=CREATED,
        started_at=datetime.now(UTC) - up_for,
    )  # fmt: skip


def version() -> r.VersionSummary:
    return r.VersionSummary(
        model="m", number=3, digest="sha256:" + "ab" * 32, parent=2, flavor="sklearn", message="m", tags={},
        created_by="alice", created_at=CREATED, size=123_456, file_count=4, aliases=["production"],
    )  # fmt: skip


def printed(renderable: RenderableType) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, highlight=False).print(renderable)
    return buffer.getvalue()


class Tables(App[None]):
    def compose(self) -> ComposeResult:
        yield DeploymentsTable()
        yield VersionsTable()


#: Up for 65 s, 3 h 5 min, 2 days 3 h; each 20 s past its minute, so a slow run still shows the same text.
UPTIMES = {"a": timedelta(seconds=65), "b": timedelta(hours=3, minutes=5, seconds=20),
           "c": timedelta(days=2, hours=3, seconds=20)}


@pytest.mark.parametrize("state", ["running", "crashloop", "starting"])
async def test_the_deployments_table_and_ps_show_the_same_uptime_and_tone(state: str) -> None:
    deployments = [deployment(name, up_for, state) for name, up_for in UPTIMES.items()]
    app = Tables()
    async with app.run_test(size=(160, 30)):
        table = app.query_one(DeploymentsTable)
        table.show(deployments)
        tui = {row[0]: row[DeploymentsTable.COLUMNS.index("uptime")] for row in rows(table)}
        cli = printed(render.deployments_table(r.DeploymentList(items=deployments)))
        cli_uptime = {line.split()[0]: line.split()[-2] for line in cli.splitlines()[1:] if line.strip()}
        assert tui == cli_uptime == {"a": "1m", "b": "3h05m", "c": "2d03h"}

        tone = fmt.PALETTE[fmt.DEPLOYMENT_TONE[state]]
        cell = table.get_row_at(0)[DeploymentsTable.COLUMNS.index("state")]
        assert cell.style == table.get_component_rich_style(f"tone--{fmt.DEPLOYMENT_TONE[state]}", partial=True)
        assert bool(cell.style.bold) == tone.bold  # the TUI's style comes from the palette's entry …
        assert render.state_text(state).style == tone.style  # … and so does the CLI's


async def test_the_versions_table_and_log_show_the_same_time_and_size() -> None:
    app = Tables()
    async with app.run_test(size=(160, 30)):
        table = app.query_one(VersionsTable)
        table.show([version()])
        row = dict(zip(VersionsTable.COLUMNS, rows(table)[0], strict=True))
        cli = printed(render.versions_table(r.VersionList.of([version()], total=1)))
        assert row["created_at"] == "2026-11-27 14:30:05"
        assert row["created_at"] in cli
        assert row["size"] == "120.6 KiB"
        assert row["size"] in cli
