"""The README, executed: every ```bash block of README.md and docs/*.md runs as written, in order, on a fresh
state directory, from a copy of the repository (so the files the blocks write stay out of the checkout) with
the checkout's .venv linked in.
Blocks that cannot run here are marked in the Markdown (``tests/helpers/readme_blocks.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.fresh_clone import fresh_env, repo_copy
from tests.helpers.paths import REPO
from tests.helpers.prerequisites import need
from tests.helpers.readme_blocks import Block, MarkerError, bash_blocks

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK_TIMEOUT = 600.0
SERVER_TIMEOUT = 120.0


def test_every_marker_is_understood() -> None:
    blocks = [b for doc in DOCS for b in bash_blocks(doc)]
    assert any(b.action == "run" for b in blocks)
    for b in blocks:
        assert b.action == "run" or b.why, b.where  # every exception says why


def test_a_misspelt_marker_is_an_error(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- readme-runner: skp (typo) -->\n```bash\ntrue\n```\n")
    with pytest.raises(MarkerError, match="unknown readme-runner marker"):
        bash_blocks(doc)
    doc.write_text("<!-- readme-runner: skip (why) -->\n\nsome text\n```bash\ntrue\n```\n")
    with pytest.raises(MarkerError, match="without a bash block"):
        bash_blocks(doc)


def wait_until_up(url: str, server: subprocess.Popen[bytes], block: Block, output: Path) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            out = output.read_text(errors="replace")[-3000:]
            pytest.fail(f"{block.where}: the server exited with {server.returncode}:\n{block.code}\n{out}")
        with contextlib.suppress(OSError, urllib.error.HTTPError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{block.where}: {url} did not answer 200 within {SERVER_TIMEOUT:.0f}s")


@contextlib.contextmanager
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def clean_up(work: Path, env: dict[str, str]) -> None:
    """Undeploy what a failed run left, stop the embedded daemon, kill any serving process left over."""
    cli = [str(REPO / ".venv" / "bin" / "modeltui"), "--no-start"]
    ps = subprocess.run([*cli, "ps", "--json"], cwd=work, env=env, capture_output=True, text=True, timeout=60,
                        check=False)
    if ps.returncode == 0:
        for d in json.loads(ps.stdout).get("items", []):
            subprocess.run([*cli, "undeploy", d["name"]], cwd=work, env=env, capture_output=True, timeout=120,
                           check=False)
    subprocess.run([*cli, "daemon", "stop"], cwd=work, env=env, capture_output=True, timeout=90, check=False)
    DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env).kill_deployments()


def daemon_log_tail(env: dict[str, str]) -> str:
    log = Path(env["MODELTUI_STATE_DIR"]) / "daemon.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else "(no daemon log)"


@pytest.mark.integration
@pytest.mark.slow
def test_readme_and_docs_run_as_written(tmp_path: Path) -> None:
    need(shutil.which("curl") is not None, "curl (the README's runtime example uses it)")
    work = repo_copy(tmp_path / "repo")
    (work / ".venv").symlink_to(REPO / ".venv")  # the README's .venv/bin paths are relative to the root
    env = fresh_env(tmp_path, REPO / ".venv" / "bin")
    ran = 0
    try:
        with servers() as started:
            for doc in DOCS:
                for block in bash_blocks(doc):
                    if block.action == "skip":
                        continue
                    if block.action == "background":
                        output = tmp_path / f"server-{len(started)}.out"
                        with output.open("wb") as sink:
                            server = subprocess.Popen(["bash", "-c", block.code], cwd=work, env=env, stdout=sink,
                                                      stderr=subprocess.STDOUT, start_new_session=True)
                        started.append(server)
                        wait_until_up(block.url, server, block, output)
                        continue
                    res = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=work, env=env,
                                         capture_output=True, text=True, timeout=BLOCK_TIMEOUT, check=False)
                    ran += 1
                    assert res.returncode == 0, (
                        f"{block.where} exited {res.returncode}:\n{block.code}\n--- stdout\n{res.stdout[-4000:]}"
                        f"\n--- stderr\n{res.stderr[-4000:]}\n--- daemon log\n{daemon_log_tail(env)}"
                    )
    finally:
        clean_up(work, env)
    assert ran >= 5
