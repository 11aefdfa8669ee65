"""A second Debian docker-registry of a test module's own: TLS with a self-signed certificate made here
(``openssl req -x509``) and htpasswd authentication (bcrypt hashes from ``htpasswd -B``, Debian's
apache2-utils), on a free loopback port. ``scripts/services.sh`` installs the tools; this starts and stops it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.prerequisites import need

USER = "pusher"
PASSWORD = "s3cret-registry-pass"
CERTS_D = Path("/etc/docker/certs.d")


def tools_problem() -> str | None:
    missing = [t for t in ("docker-registry", "openssl", "htpasswd") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} missing; run scripts/services.sh as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TlsRegistry:
    """``start()`` makes the certificate, the htpasswd file and the config, then serves; ``stop()`` ends it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cert = base / "cert.pem"  # also the CA: self-signed
        self.key = base / "key.pem"
        self.log = base / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> TlsRegistry:
        b = self.base
        b.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(self.key), "-out", str(self.cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        # Cost 4 (the least): the registry checks the bcrypt hash on every request.
        hashed = subprocess.run(["htpasswd", "-nbB", "-C", "4", USER, PASSWORD], check=True, capture_output=True)
        (b / "htpasswd").write_bytes(hashed.stdout.strip() + b"\n")
        (b / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {b / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n  tls:\n    certificate: {self.cert}\n    key: {self.key}\n"
            f"auth:\n  htpasswd:\n    realm: modeltui-test\n    path: {b / 'htpasswd'}\n"
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(b / "config.yml")], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text(errors='replace')[-2000:]}")
            if self.answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry on {self.address} did not answer within {timeout_s} s")

    def answers(self) -> bool:
        """True once ``GET /v2/`` over TLS answers 401 (credentials wanted)."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        try:
            with urllib.request.urlopen(f"https://{self.address}/v2/", timeout=2, context=ctx):
                return False
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code == 401
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @contextlib.contextmanager
    def engine_trusts_it(self) -> Iterator[None]:
        """Make the Docker engine trust the certificate (``/etc/docker/certs.d/HOST:PORT/ca.crt``), then undo."""
        need(os.geteuid() == 0, "writing /etc/docker/certs.d needs root")
        where = CERTS_D / self.address
        where.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(self.cert, where / "ca.crt")
            yield
        finally:
            shutil.rmtree(where, ignore_errors=True)


def started(base: Path) -> Iterator[TlsRegistry]:
    """For a module-scoped fixture: a started registry, stopped at teardown (skips without the tools)."""
    problem = tools_problem()
    need(problem is None, problem or "")
    reg = TlsRegistry(base)
    try:
        yield reg.start()
    finally:
        reg.stop()
