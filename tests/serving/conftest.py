"""Fixtures for the serving runtime: a real ``python -m daemon.serving`` process on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.serving import Serving, copy_example


@pytest.fixture
def serving_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Serving] = []

    def make(model_dir: Path, python: str = sys.executable) -> Serving:
        s = Serving(model_dir, tmp_path / f"serving-{len(started)}.err", python)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def example_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    """One server for the example model, shared by a module's tests (they read counters as deltas)."""
    base = tmp_path_factory.mktemp("serving")
    s = Serving(copy_example(base / "model"), base / "serving.err").start()
    yield s
    s.stop()
