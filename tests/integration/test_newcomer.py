"""A newcomer on a fresh clone: ``bash scripts/run.sh`` makes the venv (``.`` alone, not the ``dev`` extra the
other tests run with), then the everyday commands run as subprocesses of that venv's ``modeltui`` on the
embedded daemon it starts: push the example, deploy it, predict, send feedback, read metrics, undeploy, stop.

The install reuses pip's wheel cache; the rest takes seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.fresh_clone import fresh_env, repo_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTALL_TIMEOUT = 900.0


def run(cmd: list[str], clone: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def test_fresh_clone_install_runs_the_everyday_commands(tmp_path: Path) -> None:
    clone = repo_copy(tmp_path / "clone")
    venv_bin = clone / ".venv" / "bin"
    env = fresh_env(tmp_path, venv_bin)

    # The README's first command, as written; --version instead of a terminal for the TUI.
    installed = run(["bash", "scripts/run.sh", "--version"], clone, env, timeout=INSTALL_TIMEOUT)
    assert installed.stdout.startswith("modeltui, version")
    missing = subprocess.run([str(venv_bin / "python"), "-c", "import pytest"], env=env, capture_output=True,
                             check=False)
    assert missing.returncode != 0, "the fresh venv has the dev extra: it must be the plain install"

    modeltui = str(venv_bin / "modeltui")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run([modeltui, *args], clone, env)

    def cli_json(*args: str) -> Any:
        return json.loads(cli(*args, "--json").stdout)

    try:
        pushed = cli_json("push", "examples/breast_cancer", "--alias", "production", "-m", "first model")
        assert pushed["version"]["number"] == 1
        cli("deploy", "breast-cancer@production")
        (deployment,) = cli_json("ps")["items"]
        assert deployment["state"] == "running"

        predicted = cli("predict", "breast-cancer@production", "--input", "examples/breast_cancer/request.json")
        rows = [line.split() for line in predicted.stdout.splitlines()[1:]]
        assert len(rows) == 2
        assert all(re.fullmatch(r"[0-9a-f]{28}", pid) for pid, _ in rows)
        labels = clone / "labels.csv"
        labels.write_text("id,label\n" + "".join(f"{pid},{label}\n" for pid, label in rows))
        fed = cli_json("feedback", "breast-cancer@production", str(labels))
        assert (fed["sent"], fed["matched"]) == (2, 2)

        metrics = cli_json("metrics", "breast-cancer-production", "--window", "1h")
        assert metrics["deployment"] == "breast-cancer-production"
        cli("undeploy", "breast-cancer-production")
        assert cli_json("ps")["items"] == []
    finally:
        stopped = subprocess.run([modeltui, "--no-start", "daemon", "stop"], cwd=clone, env=env, capture_output=True,
                                 text=True, timeout=90, check=False)
        DaemonProcess(tmp_path / "state", tmp_path / "run" / "modeltuid.sock", env=env).kill_deployments()
    assert stopped.returncode == 0, stopped.stderr
    assert "daemon stopped" in stopped.stderr
    status = subprocess.run([modeltui, "daemon", "status"], cwd=clone, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert status.returncode == 7
    assert "last stopped cleanly" in status.stdout
