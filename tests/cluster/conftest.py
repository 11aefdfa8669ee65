"""Fixtures for real ZooKeeper servers (Debian's zookeeper package; see tests/helpers/zookeeper.py).

``zk`` is a standalone server shared by the whole run (a server serves in about 0.5 s, an ensemble in about
1.5 s); ``own_zk`` a standalone server and ``zk_ensemble`` a three-server ensemble of a test's own, for the
tests that stop or kill servers. Each is killed at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.prerequisites import need
from tests.helpers.zookeeper import ZkEnsemble, java_missing


def _ensemble(base: Path, size: int) -> Iterator[ZkEnsemble]:
    problem = java_missing()
    need(problem is None, f"{problem}; run scripts/services.sh as root")
    ensemble = ZkEnsemble(base, size=size)
    try:
        ensemble.start(timeout_s=30)
        yield ensemble
    finally:
        ensemble.close()


@pytest.fixture(scope="session")
def zk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZkEnsemble]:
    """One started standalone ZooKeeper server (a ZkEnsemble of size 1) for the whole run; ``zk.connect_string()``
    for clients. Its users never stop it and write only below a path of their own (``chroot``)."""
    yield from _ensemble(tmp_path_factory.mktemp("zk"), 1)


@pytest.fixture
def own_zk(tmp_path: Path) -> Iterator[ZkEnsemble]:
    """A standalone server of the test's own, for a test that stops and restarts it."""
    yield from _ensemble(tmp_path / "zk", 1)


@pytest.fixture
def zk_ensemble(tmp_path: Path) -> Iterator[ZkEnsemble]:
    """A started three-server ZooKeeper ensemble on loopback ports."""
    yield from _ensemble(tmp_path / "zk", 3)
