"""Fixtures shared by the TUI tests that watch a monitored deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import classifier
from tests.helpers.tui import push


@pytest.fixture
def scraped(daemon_factory: Any, tmp_path: Path) -> DaemonProcess:
    """A daemon whose monitor scrapes every second, with the model ``sign`` pushed (alias production)."""
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text("[monitor]\nscrape_interval_seconds = 1\n")
    d.start()
    push(d, classifier(tmp_path / "sign"), "--alias", "production")
    return d
