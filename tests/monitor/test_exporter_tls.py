"""The daemon's exporter beyond loopback: refused without TLS unless ``allow_plain_http``; with
``tls_cert``/``tls_key`` it serves HTTPS, checked with a real ``curl --cacert``."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from pydantic import ValidationError

from daemon.deploy.tls import self_signed
from daemon.monitor.exporter import Exporter
from daemon.monitor.service import CycleReport, Monitor
from daemon.settings import ExporterSection, load_settings


class NoDeployments:
    """The parts of Monitor the exporter reads, for a daemon with no deployments."""

    def __init__(self) -> None:
        self.settings = SimpleNamespace(scrape_interval_seconds=3600.0)
        self.last_cycle: CycleReport | None = CycleReport(t=100.0, targets=0, up=0, samples=0, seconds=0.01)


def test_beyond_loopback_needs_tls_or_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="tls_cert and tls_key, or allow_plain_http"):
        ExporterSection(address="0.0.0.0:9464")
    assert ExporterSection(address="0.0.0.0:9464", allow_plain_http=True).host == "0.0.0.0"
    assert ExporterSection(address="0.0.0.0:9464", tls_cert=Path("c.pem"), tls_key=Path("k.pem")).port == 9464
    with pytest.raises(ValidationError, match="both tls_cert and tls_key"):
        ExporterSection(address="127.0.0.1:9464", tls_cert=Path("c.pem"))
    # relative paths are from the config file's directory
    config = tmp_path / "daemon.toml"
    config.write_text('[exporter]\naddress = "0.0.0.0:0"\ntls_cert = "tls/cert.pem"\ntls_key = "tls/key.pem"\n')
    s = load_settings(config, state_dir=str(tmp_path / "state"), socket=str(tmp_path / "s.sock"))
    assert s.exporter.tls_cert == tmp_path / "tls" / "cert.pem"


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, text=True, check=False)


async def test_https_with_a_real_client(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls", "localhost")
    exporter = Exporter(
        ExporterSection(address="127.0.0.1:0", tls_cert=cert, tls_key=key), cast(Monitor, NoDeployments()), list
    )
    url = await exporter.start()
    try:
        assert url.startswith("https://127.0.0.1:")
        https = url.replace("127.0.0.1", "localhost")
        done = await asyncio.to_thread(curl, "--cacert", str(cert), "-w", "\n%{http_code}", https)
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith("\n200")
        assert "modeltui_monitor_last_cycle_timestamp_seconds" in done.stdout
        untrusted = await asyncio.to_thread(curl, https)
        assert untrusted.returncode != 0  # a self-signed certificate nobody was told to trust
        plain = await asyncio.to_thread(curl, "-w", "%{http_code}", url.replace("https://", "http://"))
        assert plain.returncode != 0 or not plain.stdout.endswith("200")
    finally:
        await exporter.stop()
