"""What a new user meets first, over real processes: an embedded daemon that cannot start says why and where
its output is; ``daemon status`` never starts a daemon and says when and why the last one stopped; ``predict``
prints the ids ``feedback`` needs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.protocol import lifecycle
from tests.helpers.daemon import DaemonProcess, daemon_env

pytestmark = pytest.mark.integration


def user_env(base: Path, config: str = "[exporter]\nenabled = false\n") -> dict[str, str]:
    (base / "home").mkdir(parents=True, exist_ok=True)
    env = daemon_env(base)
    Path(env["MODELTUI_CONFIG"]).write_text(config)
    return env


def modeltui(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modeltui", *args], env=env, capture_output=True, text=True,
                          timeout=90, check=False)


def output_file(stderr: str) -> Path:
    found = re.search(r"\(its output: (.+?)\)\s*$", stderr)
    assert found, stderr
    return Path(found.group(1))


def daemon_pid(env: dict[str, str]) -> int:
    record = lifecycle.read_record(Path(env["MODELTUI_SOCKET"]))
    assert record is not None
    return record.pid


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 20
    while lifecycle.pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still runs"
        time.sleep(0.05)


def test_embedded_start_failure_shows_the_exception_and_a_log_that_exists(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    (tmp_path / "a-file").write_text("not a directory")
    env["MODELTUI_STATE_DIR"] = str(tmp_path / "a-file" / "state")  # the daemon dies creating it
    res = modeltui(env, "ls")
    assert res.returncode == 7
    assert "exited with status 1: NotADirectoryError: [Errno 20] Not a directory" in res.stderr
    log = output_file(res.stderr)
    assert log.is_file()
    assert "Traceback (most recent call last)" in log.read_text()

    bad = user_env(tmp_path / "bad", "[daemon]\nmax_clients = 0\n")
    res = modeltui(bad, "ls")
    assert res.returncode == 7
    assert "exited with status 78: modeltuid: configuration error:" in res.stderr
    assert "daemon.max_clients" in res.stderr
    assert output_file(res.stderr).is_file()


@pytest.fixture
def user(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A user whose embedded daemons the test starts through ``modeltui``; whatever still runs at the end,
    a failed assertion included, is killed."""
    env = user_env(tmp_path)
    yield env
    record = lifecycle.read_record(Path(env["MODELTUI_SOCKET"]))
    if record is not None and lifecycle.pid_alive(record.pid):
        os.kill(record.pid, signal.SIGKILL)
        wait_gone(record.pid)


def test_daemon_status_never_starts_one_and_says_when_and_why_the_last_stopped(user: dict[str, str]) -> None:
    env = user
    sock = Path(env["MODELTUI_SOCKET"])
    probe = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), sock, env=env)

    res = modeltui(env, "daemon", "status")
    assert res.returncode == 7
    assert f"no daemon is running on {sock}" in res.stdout
    assert not sock.exists()  # nothing was started

    # Killed without a chance to say anything.
    assert modeltui(env, "ls").returncode == 0
    pid = daemon_pid(env)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    res = modeltui(env, "daemon", "status")
    assert res.returncode == 7, res.stderr
    assert "ended without a clean stop: killed" in res.stdout
    assert f"pid {pid}" in res.stdout
    assert not probe.ping()  # status did not start a daemon to answer itself
    assert daemon_pid(env) == pid

    # Stopped cleanly, by request and by signal.
    assert modeltui(env, "ls").returncode == 0
    assert modeltui(env, "daemon", "stop").returncode == 0
    res = modeltui(env, "daemon", "status")
    assert res.returncode == 7
    assert "last stopped cleanly" in res.stdout
    assert "by a daemon stop request" in res.stdout
    assert modeltui(env, "ls").returncode == 0
    pid = daemon_pid(env)
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    res = modeltui(env, "daemon", "status", "--json")
    assert res.returncode == 7
    doc = json.loads(res.stdout)
    assert doc["running"] is False
    assert doc["last_run"]["state"] == "stopped"
    assert doc["last_run"]["reason"] == "SIGTERM"

    # Crashed at start, after it held the socket: the registry database cannot be opened.
    state = Path(env["MODELTUI_STATE_DIR"])
    for db in state.glob("registry.db*"):
        db.unlink()
    (state / "registry.db").mkdir()
    res = modeltui(env, "ls")
    assert res.returncode == 7
    assert "cannot open the registry database" in res.stderr
    res = modeltui(env, "daemon", "status")
    assert res.returncode == 7
    assert "last crashed" in res.stdout
    assert "ProtocolError: UNAVAILABLE: cannot open the registry database" in res.stdout
    assert f"its log: {state / 'daemon.log'}" in res.stdout


def test_predict_prints_the_ids_feedback_takes(daemon: DaemonProcess, example_dir: Path, tmp_path: Path) -> None:
    assert daemon.cli("push", str(example_dir), "--alias", "production").returncode == 0
    deployed = daemon.cli("deploy", "breast-cancer@production")
    assert deployed.returncode == 0, deployed.stderr
    request = str(example_dir / "request.json")  # MLflow's dataframe_split: the ids come in a header

    human = daemon.cli("predict", "breast-cancer@production", "--input", request)
    assert human.returncode == 0, human.stderr
    header, *rows = human.stdout.splitlines()
    assert header.split() == ["id", "prediction"]
    assert len(rows) == 2
    ids = [row.split()[0] for row in rows]
    assert all(re.fullmatch(r"[0-9a-f]{28}", i) for i in ids), ids

    as_json = daemon.cli("predict", "breast-cancer@production", "--input", request, "--json")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert len(answer["ids"]) == len(answer["predictions"]) == 2
    assert set(answer["ids"]).isdisjoint(ids)

    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{row.split()[0]},{row.split()[1]}\n" for row in rows))
    fed = daemon.cli("feedback", "breast-cancer@production", str(labels), "--json")
    assert fed.returncode == 0, fed.stderr
    assert json.loads(fed.stdout)["matched"] == 2


def test_a_second_daemon_on_the_socket_is_refused_without_a_crash_record(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    assert modeltui(env, "ls").returncode == 0
    first = daemon_pid(env)
    try:
        second = subprocess.run([sys.executable, "-m", "daemon", "run"], env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert second.returncode == 75, second.stderr
        record = lifecycle.read_record(Path(env["MODELTUI_SOCKET"]))
        assert record is not None
        assert (record.pid, record.state) == (first, "running")  # the refused one wrote nothing
        assert "CRITICAL" not in (Path(env["MODELTUI_STATE_DIR"]) / "daemon.log").read_text()
    finally:
        modeltui(env, "daemon", "stop")
