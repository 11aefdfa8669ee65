"""A real ``modeltuid run`` child process on its own socket and state directory, and the CLI run against it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.deploy.base import owner_id


@dataclass
class DaemonProcess:
    """A real ``modeltuid run`` child process with its own state directory and socket."""

    state_dir: Path
    socket: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self, timeout: float = 15.0) -> DaemonProcess:
        log = open(self.state_dir.parent / "daemon.out", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = (self.state_dir.parent / "daemon.out").read_text(errors="replace")
                raise RuntimeError(f"modeltuid exited with {self.proc.returncode}:\n{out}")
            if self.socket.exists() and self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError("modeltuid did not start in time")

    def ping(self) -> bool:
        """True when the daemon answers hello on its socket."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            sock.connect(str(self.socket))
            sock.sendall(b'{"type": "hello", "protocol": 1, "client": "conftest"}\n')
            return b'"welcome"' in sock.recv(4096)
        except OSError:
            return False
        finally:
            sock.close()

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``modeltui ARGS`` against this daemon and capture its output."""
        return subprocess.run(
            [sys.executable, "-m", "modeltui", *args],
            env=self.env,
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def serving_pids(self, deployment: str = "") -> list[int]:
        """Serving processes this daemon started (for ``deployment``, or all): they outlive the daemon."""
        label = f"{owner_id(self.state_dir)}/{deployment + '/' if deployment else ''}"
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if any(a.decode(errors="replace").startswith(label) for a in argv) and b"daemon.serving" in argv:
                    pids.append(int(entry.name))
        # Forked from the zygote: their command line is the zygote's; the backend keeps a record of each.
        workloads = self.state_dir.with_name(self.state_dir.name + "-workloads")  # system mode: their own uid
        records = [
            *(self.state_dir / "deploy" / "instances").glob("*.json"),
            *(workloads / "deploy" / "instances").glob("*.json"),
        ]
        for record in records:
            with contextlib.suppress(OSError, ValueError, KeyError):
                rec = json.loads(record.read_text())
                if deployment in ("", rec["deployment"]) and Path(f"/proc/{rec['pid']}").exists():
                    pids.append(int(rec["pid"]))
        return sorted(set(pids))

    def kill_deployments(self) -> None:
        for pid in self.serving_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def daemon_env(base: Path) -> dict[str, str]:
    # No MODELTUI_ settings, and no terminal size of whoever runs pytest: a CLI on a pipe prints whole lines
    # unless a test gives COLUMNS itself (pytest-xdist workers, for one, inherit a COLUMNS).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELTUI_") and k not in ("COLUMNS", "LINES")}
    env.update(
        MODELTUI_STATE_DIR=str(base / "state"),
        MODELTUI_SOCKET=str(base / "run" / "modeltuid.sock"),
        MODELTUI_CONFIG=str(base / "daemon.toml"),
        HOME=str(base / "home"),
        PYTHONUNBUFFERED="1",
    )
    return env


def cli_json(d: DaemonProcess, *args: str) -> Any:
    """``modeltui ARGS --json`` against ``d``, which must succeed, as parsed JSON."""
    res = d.cli(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def deployment(d: DaemonProcess, name: str) -> dict[str, Any]:
    """Deployment ``name`` as ``modeltui ps NAME --json`` shows it."""
    return cli_json(d, "ps", name)["deployment"]  # type: ignore[no-any-return]


def admin_token(d: DaemonProcess, name: str) -> str:
    """Deployment ``name``'s admin token, read as only the daemon's user can: from its database."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(d.state_dir / "registry.db")) as db:
        row = db.execute(
            "SELECT c.admin_token FROM deployment_credentials c JOIN deployments d ON d.id = c.deployment_id "
            "WHERE d.name = ?",
            (name,),
        ).fetchone()
    return str(row[0])
