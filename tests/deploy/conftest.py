"""Fixtures shared by the Docker tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheelhouse (``[docker] wheelhouse``) for the session: the model wheels are built once."""
    return tmp_path_factory.mktemp("wheelhouse")
