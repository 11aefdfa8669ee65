"""Shared fixtures: a real modeltuid process on a real socket, the example model directory (the helpers they
build on are in tests/helpers/)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import DaemonProcess, daemon_env
from tests.helpers.paths import EXAMPLE
from tests.helpers.prerequisites import need
from tests.helpers.sshd import SshServer, sshd_binary, start_sshd


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[type[DaemonProcess] | object]:
    """Make (unstarted) daemons in fresh directories; all are stopped at teardown."""
    made: list[DaemonProcess] = []

    def make(name: str = "d") -> DaemonProcess:
        base = tmp_path / name
        (base / "home").mkdir(parents=True)
        env = daemon_env(base)
        d = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
        d.kill_deployments()


@pytest.fixture
def daemon(daemon_factory: object) -> DaemonProcess:
    """A started daemon, stopped at teardown."""
    return daemon_factory().start()  # type: ignore[operator, no-any-return]


@pytest.fixture(scope="module")
def module_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One started daemon shared by a module's tests (a start costs about a second, a few hundred times a run).

    Only for tests that leave nothing another test could see: refused requests, reads, names no other test of
    the module uses. A test that stops the daemon, counts its clients or log lines, or asserts version numbers
    of a common name takes its own ``daemon``."""
    base = tmp_path_factory.mktemp("daemon")
    (base / "home").mkdir()
    env = daemon_env(base)
    shared = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env)
    try:
        yield shared.start()
    finally:
        shared.stop()
        shared.kill_deployments()


@pytest.fixture
def example_dir(tmp_path: Path) -> Path:
    """A private copy of the bundled scikit-learn example model directory."""
    dest = tmp_path / "breast_cancer"
    shutil.copytree(EXAMPLE, dest)
    return dest


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real OpenSSH sshd on 127.0.0.1 that lets the tests in as the current user (tests/helpers/sshd.py)."""
    binary = sshd_binary()
    need(binary is not None and shutil.which("ssh") is not None, "OpenSSH (openssh-server) is not installed")
    assert binary is not None
    server = start_sshd(tmp_path_factory.mktemp("sshd"), binary)
    try:
        yield server
    finally:
        server.stop()
