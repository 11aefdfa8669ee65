"""What an idle TUI sends to its terminal: the real ``modeltui`` on a pty this test opens, against a real
daemon that runs one real deployment of the bundled example (process backend). Over SSH every byte a view
writes crosses the network; a view where nothing changes must stay within :data:`BUDGET_PER_MINUTE`.

One TUI per view, all measured over the same window, so the test costs one window however many views
there are. Each view is reached with keys written to its terminal and given :data:`SETTLE_SECONDS` first
(the first answers, the footer, a learned refresh interval).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.daemon import DaemonProcess, daemon_env
from tests.helpers.paths import EXAMPLE
from tests.helpers.pty_terminal import PtyTui

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

#: The issue's goal: at most 2 KB a minute while nothing changes.
BUDGET_PER_MINUTE = 2048
WINDOW_SECONDS = 30.0
SETTLE_SECONDS = 5.0
DEPLOYMENT = "breast-cancer-production"


@dataclass(frozen=True)
class View:
    """How to reach a view from the models screen: keys, each followed by the text that shows it arrived."""

    name: str
    steps: tuple[tuple[str, str], ...]


VIEWS = (
    View("models", ()),
    View("model versions", (("\r", "models › breast-cancer"),)),
    View("deployments", (("d", DEPLOYMENT),)),
    View("deployment log", (("d", DEPLOYMENT), ("\r", f"deployment {DEPLOYMENT}"))),
    View("deployment info", (("d", DEPLOYMENT), ("\r", f"deployment {DEPLOYMENT}"), ("i", "admin url"))),
    View("metrics", (("d", DEPLOYMENT), ("m", f"metrics {DEPLOYMENT}"))),
    View("alerts", (("A", "local › alerts"),)),
    View("maintenance", (("M", "local › maintenance"),)),
    View("fleet", (("F", "local › fleet"),)),
)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon running one process-backend deployment of the bundled example (shared by every view)."""
    base = tmp_path_factory.mktemp("idle")
    (base / "home").mkdir()
    env = daemon_env(base)
    daemon = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env).start()
    try:
        example = base / "breast_cancer"
        shutil.copytree(EXAMPLE, example)
        pushed = daemon.cli("push", str(example), "--alias", "production")
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        up = daemon.cli("deploy", "breast-cancer@production")
        assert up.returncode == 0, up.stdout + up.stderr
        yield daemon
    finally:
        daemon.cli("undeploy", DEPLOYMENT)
        daemon.stop()
        daemon.kill_deployments()


def open_view(tui: PtyTui, view: View) -> None:
    tui.wait_for("breast-cancer")  # the models list answered: the table has its row to open
    for key, shows in view.steps:
        mark = tui.mark()
        tui.keys(key)
        tui.wait_for(shows, mark)


def test_idle_views_stay_within_the_byte_budget(deployed: DaemonProcess) -> None:
    tuis = {view.name: PtyTui(deployed.env) for view in VIEWS}
    try:
        for view in VIEWS:
            open_view(tuis[view.name], view)
        time.sleep(SETTLE_SECONDS)
        start = time.monotonic()
        time.sleep(WINDOW_SECONDS)
        end = time.monotonic()
        per_minute = {name: tui.bytes_between(start, end) * 60 / (end - start) for name, tui in tuis.items()}
        asked = {name: tui.since(0) for name, tui in tuis.items()}
    finally:
        for tui in tuis.values():
            tui.close()
    figures = "\n".join(f"  {name:16} {rate / 1024:8.2f} KB/min" for name, rate in per_minute.items())
    print(f"idle bytes per view over {end - start:.0f}s:\n{figures}")  # shown with -rP
    over = [name for name, rate in per_minute.items() if rate > BUDGET_PER_MINUTE]
    assert not over, f"idle views over {BUDGET_PER_MINUTE / 1024:.0f} KB/min: {over}\n{figures}"
    for name, output in asked.items():
        assert b"\x1b[?1000h" in output, f"{name}: clicks are reported"
        assert b"\x1b[?1003h" not in output, f"{name}: the TUI asked for every mouse motion"
