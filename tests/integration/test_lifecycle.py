"""Daemon lifecycle over real processes: one daemon per socket, stale and hostile socket paths, clean
SIGTERM, private files, the embedded start, and events pushed to a subscribed client."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from daemon.protocol.events import RegistryEvent
from daemon.protocol.paths import find_socket
from modeltui.client import connect
from tests.helpers.daemon import DaemonProcess, daemon_env
from tests.helpers.models import make_model_dir

pytestmark = pytest.mark.integration


def run_daemon(env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", "run"], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_second_daemon_refuses_to_start(daemon: DaemonProcess) -> None:
    res = run_daemon(daemon.env)
    assert res.returncode == 75
    assert "another modeltuid" in res.stderr or "already answers" in res.stderr
    assert daemon.ping()


def test_second_daemon_on_the_same_state_dir_refuses(daemon: DaemonProcess, tmp_path: Path) -> None:
    env = {**daemon.env, "MODELTUI_SOCKET": str(tmp_path / "other.sock")}
    res = run_daemon(env)
    assert res.returncode == 75
    assert str(daemon.socket) in res.stderr  # says which daemon holds the state directory
    assert not (tmp_path / "other.sock").exists()


def test_sigterm_stops_cleanly_and_removes_the_socket(daemon: DaemonProcess) -> None:
    assert daemon.stop(signal.SIGTERM) == 0
    assert not daemon.socket.exists()
    log = (daemon.state_dir / "daemon.log").read_text()
    assert "stopped" in log


def test_stale_socket_is_replaced(daemon_factory: Any) -> None:
    d: DaemonProcess = daemon_factory()
    d.socket.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(d.socket))
    stale.close()  # the file stays, nobody listens: what a crashed daemon leaves
    d.start()
    assert d.ping()


def test_symlink_at_socket_path_is_not_followed(daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory()
    d.socket.parent.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    d.socket.symlink_to(victim)
    d.start()
    assert victim.read_text() == "precious"
    assert stat.S_ISSOCK(os.lstat(d.socket).st_mode)


def test_regular_file_at_socket_path_is_refused(daemon_factory: Any) -> None:
    d: DaemonProcess = daemon_factory()
    d.socket.parent.mkdir(parents=True)
    d.socket.write_text("not a socket")
    res = run_daemon(d.env)
    assert res.returncode == 75
    assert "not a socket" in res.stderr
    assert d.socket.read_text() == "not a socket"


def test_socket_and_state_are_private_in_user_mode(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.socket.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(daemon.state_dir).st_mode) == 0o700
    for p in daemon.state_dir.rglob("*"):
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode & 0o077 == 0, f"{p} is {oct(mode)}"


def test_embedded_daemon_starts_on_demand_and_stops(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    env = daemon_env(tmp_path)
    sock = Path(env["MODELTUI_SOCKET"])
    cli = [sys.executable, "-m", "modeltui"]
    res = subprocess.run([*cli, "ls", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert '"items": []' in res.stdout
    assert sock.exists()
    assert (Path(env["MODELTUI_STATE_DIR"]) / "daemon.log").exists()  # logs in its state directory
    status = subprocess.run([*cli, "--no-start", "daemon", "status", "--json"], env=env, capture_output=True,
                            text=True, timeout=30, check=False)
    assert status.returncode == 0
    stop = subprocess.run([*cli, "daemon", "stop"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 10
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sock.exists()


def test_socket_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "daemon.toml"
    cfg.write_text('[daemon]\nsocket = "from-config.sock"\n')
    monkeypatch.delenv("MODELTUI_SOCKET", raising=False)
    monkeypatch.setenv("MODELTUI_CONFIG", str(cfg))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert find_socket() == tmp_path / "from-config.sock"
    monkeypatch.setenv("MODELTUI_SOCKET", "/env.sock")
    assert find_socket() == Path("/env.sock")
    assert find_socket("/flag.sock") == Path("/flag.sock")
    monkeypatch.delenv("MODELTUI_SOCKET")
    cfg.unlink()
    assert find_socket() == tmp_path / "modeltui" / "modeltuid.sock"


async def test_subscribed_client_is_pushed_registry_events(daemon: DaemonProcess, tmp_path: Path) -> None:
    client = await connect(daemon.socket)
    got: list[RegistryEvent] = []
    arrived = asyncio.Event()

    def on_event(event: Any) -> None:
        if isinstance(event, RegistryEvent):
            got.append(event)
            arrived.set()

    client.add_listener(on_event)
    try:
        await client.subscribe("registry")
        make_model_dir(tmp_path / "m", "live")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modeltui", "push", str(tmp_path / "m"), env=daemon.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        assert await proc.wait() == 0
        await asyncio.wait_for(arrived.wait(), 5)
        assert got[0].kind == "version.pushed"
        assert (got[0].model, got[0].version) == ("live", 1)
    finally:
        await client.close()


def test_bad_config_is_reported(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    env = daemon_env(tmp_path)
    Path(env["MODELTUI_CONFIG"]).write_text("[daemon]\nmax_clients = 'many'\nunknown = 1\n")
    res = subprocess.run([sys.executable, "-m", "daemon", "check-config"], env=env, capture_output=True, text=True,
                         check=False, timeout=30)
    assert res.returncode == 78
    assert "max_clients" in res.stderr
    assert "unknown" in res.stderr


def test_another_process_opening_the_database_leaves_the_daemon_whole(daemon: DaemonProcess, tmp_path: Path) -> None:
    """An admin's ``sqlite3 registry.db`` (a read-write connection that closes) must not checkpoint and delete
    the WAL under the daemon: the daemon keeps SQLite's shared lock on the file (it never closes another
    descriptor of it, which would drop every POSIX lock it holds)."""
    import sqlite3

    d = daemon
    assert d.cli("push", str(make_model_dir(tmp_path / "a", "locks"))).returncode == 0
    other = sqlite3.connect(d.state_dir / "registry.db")
    assert other.execute("SELECT count(*) FROM versions").fetchone()[0] == 1
    other.close()
    assert (d.state_dir / "registry.db-wal").exists()  # still the daemon's
    pushed = d.cli("push", str(make_model_dir(tmp_path / "b", "locks", weights=b"w2")))
    assert pushed.returncode == 0, pushed.stderr
    shown = d.cli("show", "locks:2")
    assert shown.returncode == 0, shown.stderr
    d.stop()
    d.start()
    assert d.cli("show", "locks:2").returncode == 0  # the push survived the restart
