"""What a deployment's runtime is told about authentication and TLS (docs/security.md, "Endpoint
authentication" and "TLS"), from ``[serving]`` and the deployment's credentials.

*Beyond loopback* means the runtime listens on an address outside 127.0.0.0/8 and ::1. The process backend
always binds 127.0.0.1; the Docker backend binds ``[docker] bind_address`` (``0.0.0.0`` serves other hosts).
"""

from __future__ import annotations

import os
from pathlib import Path

from daemon.serving.auth import (
    ENV_ADMIN,
    ENV_AUTH,
    ENV_HEALTH_OPEN,
    ENV_METRICS_OPEN,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    ENV_TOKEN,
    sha256_hex,
)
from daemon.settings import Settings, is_loopback_host
from daemon.store.credentials import Credentials

#: a certificate chain longer than this is not handed to clients
MAX_CERT_BYTES = 64 * 1024


def bind_host(settings: Settings, backend: str) -> str:
    """Where the backend's runtimes listen."""
    return settings.docker.bind_address if backend == "docker" else "127.0.0.1"


def beyond_loopback(settings: Settings, backend: str) -> bool:
    return not is_loopback_host(bind_host(settings, backend))


def auth_required(settings: Settings, backend: str) -> bool:
    """Whether the prediction and feedback routes need the clients' token (``[serving] auth``). ``auto``:
    beyond loopback, and on loopback too in system mode (every local user reaches 127.0.0.1 of a shared
    host); only a user-mode daemon's loopback runtimes stay open."""
    mode = settings.serving.auth
    if mode == "auto":
        return settings.mode == "system" or beyond_loopback(settings, backend)
    return mode == "on"


def runtime_env(settings: Settings, backend: str, creds: Credentials) -> dict[str, str]:
    """The runtime's ``MODELTUI_*`` settings: token hashes (never the tokens), which routes are open, TLS."""
    serving = settings.serving
    metrics_open = serving.metrics_open
    if metrics_open is None:  # its histograms are the clients' inputs: closed wherever auth is needed by auto
        metrics_open = settings.mode != "system" and not beyond_loopback(settings, backend)
    env = {
        ENV_AUTH: "on" if auth_required(settings, backend) else "off",
        ENV_TOKEN: sha256_hex(creds.token) if creds.token else "",
        ENV_ADMIN: sha256_hex(creds.admin_token),
        ENV_HEALTH_OPEN: "1" if serving.health_open else "0",
        ENV_METRICS_OPEN: "1" if metrics_open else "0",
    }
    if serving.tls_cert is not None and serving.tls_key is not None:  # Docker mounts a copy (docker.stage_tls)
        env[ENV_TLS_CERT] = str(serving.tls_cert)
        env[ENV_TLS_KEY] = str(serving.tls_key)
    return env


#: the runtime settings fixed at its start that /admin/token does not change (the token hash it does)
ROUTE_KEYS = (ENV_AUTH, ENV_HEALTH_OPEN, ENV_METRICS_OPEN, ENV_TLS_CERT, ENV_TLS_KEY)


def route_settings(env: dict[str, str]) -> dict[str, str]:
    """Which routes a runtime started with ``env`` leaves open, and its TLS files: recorded with the instance;
    an adopted instance whose record differs from what :func:`runtime_env` gives now is restarted."""
    return {key: env.get(key, "") for key in ROUTE_KEYS}


class CertText:
    """``[serving] tls_cert``'s text for clients to pin, read again when the file changes (a renewal)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._pem: str | None = None

    def get(self) -> str | None:
        """Blocking: the current certificate (None when unreadable)."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._seen = None
            return None
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if seen != self._seen:
            self._pem = tls_cert_pem(self.path)
            self._seen = seen if self._pem is not None else None
        return self._pem


def tls_cert_pem(path: Path) -> str | None:
    """Blocking: the certificate file's text (PEM, public), for clients to pin; None when unreadable."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CERT_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_CERT_BYTES or b"-----BEGIN CERTIFICATE-----" not in data:
        return None
    return data.decode("ascii", errors="replace")


def scheme(settings: Settings, backend: str) -> str:
    """The public endpoint's scheme."""
    return "https" if settings.serving.tls_cert is not None else "http"
