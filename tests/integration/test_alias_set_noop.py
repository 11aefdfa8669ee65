"""``alias set`` onto the version the alias already names changes nothing and says so: it does not print the
earlier move (another user's, with their reason) as if it had just happened, and ``--json`` says
``changed: false``. The history keeps only real moves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir

pytestmark = pytest.mark.integration


def alias_set(d: DaemonProcess, *args: str) -> Any:
    done = d.cli("alias", "set", "churn", "production", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_noop_alias_set_says_the_alias_was_already_there(daemon: DaemonProcess, tmp_path: Path) -> None:
    d = daemon
    for n in (1, 2):
        pushed = d.cli("push", str(make_model_dir(tmp_path / f"v{n}", "churn", weights=b"w%d" % n)))
        assert pushed.returncode == 0, pushed.stderr
    moved = alias_set(d, "2", "--reason", "alice: canary looks good")
    assert moved["changed"] is True
    assert (moved["from_version"], moved["to_version"]) == (None, 2)

    again = alias_set(d, "2", "--reason", "bob: make sure")
    assert again["changed"] is False
    assert again["to_version"] == 2
    assert again["reason"] == "alice: canary looks good"  # the last real move, marked as such

    human = d.cli("alias", "set", "churn", "production", "2", "--reason", "bob: again")
    assert human.returncode == 0, human.stderr
    assert "churn@production already points to 2" in human.stdout
    assert "nothing changed" in human.stdout
    assert "→" not in human.stdout  # no move is shown as if it had just been made
    assert "alice" not in human.stdout

    history = json.loads(d.cli("alias", "history", "churn", "production", "--json").stdout)
    assert [(e["from_version"], e["to_version"]) for e in history["events"]] == [(None, 2)]
    assert alias_set(d, "1")["changed"] is True  # a real move still says it moved
