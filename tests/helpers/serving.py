"""A real serving runtime (``python -m daemon.serving``) on a free loopback port, and requests to it."""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers.paths import EXAMPLE, REPO


class Serving:
    """One serving process; ``start`` returns once it printed ``LISTENING`` (and, by default, is ready)."""

    def __init__(self, model_dir: Path, log: Path, python: str = sys.executable) -> None:
        self.model_dir = model_dir
        self.log = log
        self.python = python
        """The interpreter that runs the runtime (another venv's, to try what this one lacks)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, *args: str, ready: bool = True, timeout: float = 30.0) -> Serving:
        err = open(self.log, "ab")  # noqa: SIM115 - closed right after the child inherits it
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [self.python, "-m", "daemon.serving", "--model-dir", str(self.model_dir), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO,
        )
        err.close()
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if readable else ""
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"no LISTENING line (got {line!r}); stderr:\n{self.stderr()}")
        self.port = int(line.rsplit(":", 1)[1])
        if ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"serving exited with {self.proc.returncode}:\n{self.stderr()}")
            status, _, _ = self.request("GET", "/health")
            if status == 200:
                return
            time.sleep(0.05)
        raise RuntimeError("serving did not become ready")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(
        self, method: str, path: str, body: bytes | str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connect()
        try:
            return send(conn, method, path, body, headers)
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, **kw)
        return status, json.loads(data)

    def metrics(self) -> str:
        status, _, data = self.request("GET", "/metrics")
        assert status == 200
        return data.decode()

    def raw(self, payload: bytes, *, read_timeout: float = 10.0) -> bytes:
        """Send raw bytes on a fresh connection, return everything read until the server closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=read_timeout) as s:
            s.sendall(payload)
            chunks = []
            while True:
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def send(
    conn: http.client.HTTPConnection, method: str, path: str,
    body: bytes | str | dict[str, Any] | Iterator[bytes] | None = None, headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on ``conn``; a dict is sent as JSON, an iterator of bytes chunked."""
    hdrs = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def copy_example(dst: Path) -> Path:
    """A private copy of the bundled example model directory at ``dst``."""
    shutil.copytree(EXAMPLE, dst)
    return dst


def write_python_model(path: Path, code: str, *, inputs: str, outputs: str = "", extra: str = "") -> Path:
    """The python-flavor model ``py-model`` running ``code``, with the given signature fields."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "predict.py").write_text(code)
    (path / "modeltui.toml").write_text(
        f'name = "py-model"\nflavor = "python"\nmodel_file = "predict.py:predict"\n{extra}\n'
        f"[signature]\ninputs = [{inputs}]\n" + (f"outputs = [{outputs}]\n" if outputs else "")
    )
    return path
