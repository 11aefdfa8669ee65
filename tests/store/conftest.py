"""Fixtures for the store tests: a registry in a temp state dir and a way to push a small model."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.protocol import requests as q
from daemon.registry.service import Registry
from tests.helpers.models import IRIS_MANIFEST


def _ingest_path(reg: Registry, path: Path) -> q.PushFile:
    fd = os.open(path, os.O_RDONLY)
    try:
        got = reg.ingest(fd, path.stat().st_size)
    finally:
        os.close(fd)
    return q.PushFile(path=path.name, sha256=got.sha256, size=got.size)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def reg(state: Path) -> Iterator[Registry]:
    registry = Registry(state)
    yield registry
    registry.close()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "modeltui.toml").write_bytes(IRIS_MANIFEST)
    (d / "model.bin").write_bytes(os.urandom(3 * (1 << 20) + 17))
    return d


@pytest.fixture
def ingest_path() -> Callable[[Registry, Path], q.PushFile]:
    """Ingest one file into a registry and describe it for a push."""
    return _ingest_path
