"""The wheelhouse takes wheels only: a requirement published as an sdist is refused by name, and its build
backend never runs as the daemon (it would: the daemon's uid is admin-equivalent). No network: a local index."""

from __future__ import annotations

import asyncio
import socket
import tarfile
from pathlib import Path

import pytest

from daemon.deploy.image import ImageError, ensure_wheelhouse

BACKEND = """\
from pathlib import Path
Path({marker!r}).write_text("the sdist's build code ran")

def _no(*args, **kwargs):
    raise RuntimeError("not built here")

get_requires_for_build_wheel = lambda config_settings=None: []
prepare_metadata_for_build_wheel = build_wheel = build_sdist = _no
"""
PYPROJECT = """\
[build-system]
requires = []
build-backend = "evilbackend"
backend-path = ["."]

[project]
name = "mtui-sdist-only"
version = "1.0"
"""


def make_sdist(index: Path, marker: Path) -> None:
    src = index.parent / "mtui_sdist_only-1.0"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "evilbackend.py").write_text(BACKEND.format(marker=str(marker)))
    (src / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: mtui-sdist-only\nVersion: 1.0\n")
    index.mkdir()
    with tarfile.open(index / "mtui_sdist_only-1.0.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=src.name)


def test_an_sdist_only_requirement_is_refused_and_never_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index, marker = tmp_path / "index", tmp_path / "ran"
    make_sdist(index, marker)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    lines: list[str] = []
    with pytest.raises(ImageError) as info:
        asyncio.run(ensure_wheelhouse(tmp_path / "wheels", ["mtui-sdist-only"], lines.append))
    assert not marker.exists(), "the sdist's build backend ran as the daemon"
    message = str(info.value)
    assert "no wheel of mtui-sdist-only" in message
    assert "wheels only" in message
    assert "(pip: 'ERROR: No matching distribution found for mtui-sdist-only')" in message
    assert not list((tmp_path / "wheels").glob("cp*")), "no wheelhouse is left behind"


def test_an_unreachable_index_is_named_as_a_possible_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding 8: pip says "No matching distribution" for an index it cannot reach too; the error quotes
    pip and names that cause. The index is a closed local port: refused at once, no retries."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    with pytest.raises(ImageError) as info:
        asyncio.run(ensure_wheelhouse(tmp_path / "wheels", ["mtui-nowhere"], lambda line: None))
    message = str(info.value)
    assert "or the index is unreachable" in message
    assert "(pip: 'ERROR: No matching distribution found for mtui-nowhere')" in message
