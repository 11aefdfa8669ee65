"""Fixtures shared by the TUI tests that watch a monitored deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess
from tests.monitor.test_metrics_e2e import classifier

from .test_app import push


@pytest.fixture
def scraped(daemon_factory: Any, tmp_path: Path) -> DaemonProcess:
    """A daemon whose monitor scrapes every second, with the model ``sign`` pushed (alias production)."""
    d: DaemonProcess = daemon_factory()
    Path(d.env["MODELTUI_CONFIG"]).write_text("[monitor]\nscrape_interval_seconds = 1\n")
    d.start()
    push(d, classifier(tmp_path / "sign"), "--alias", "production")
    return d
