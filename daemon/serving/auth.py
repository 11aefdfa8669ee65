"""Bearer tokens for the runtime's routes, checked against SHA-256 hashes in constant time.

The daemon keeps each deployment's tokens; the runtime only ever sees their SHA-256 hashes, through its
environment (never argv): ``MODELTUI_TOKEN_SHA256`` (the clients' token), ``MODELTUI_ADMIN_TOKEN_SHA256``
(the token only the daemon holds), ``MODELTUI_AUTH`` (``on``: the prediction and feedback routes need a
token), ``MODELTUI_HEALTH_OPEN`` and ``MODELTUI_METRICS_OPEN`` (``0``: ``/health`` or ``/metrics`` need a
token too). The admin token is accepted wherever the client token is; the client token never opens an
admin route (403). ``POST /admin/token`` on the admin port swaps the clients' hash (rotation without a
restart).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
import sys
import time
from collections.abc import MutableMapping
from typing import Any

ENV_TOKEN = "MODELTUI_TOKEN_SHA256"
ENV_ADMIN = "MODELTUI_ADMIN_TOKEN_SHA256"
ENV_AUTH = "MODELTUI_AUTH"
ENV_HEALTH_OPEN = "MODELTUI_HEALTH_OPEN"
ENV_METRICS_OPEN = "MODELTUI_METRICS_OPEN"
ENV_TLS_CERT = "MODELTUI_TLS_CERT"
ENV_TLS_KEY = "MODELTUI_TLS_KEY"
ENV_ALL = (ENV_TOKEN, ENV_ADMIN, ENV_AUTH, ENV_HEALTH_OPEN, ENV_METRICS_OPEN, ENV_TLS_CERT, ENV_TLS_KEY)

#: What a request presented: nothing usable, the clients' token, or the daemon's admin token.
NONE, CLIENT, ADMIN = 0, 1, 2
_BEARER = b"bearer "


def bearer(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header presenting ``token`` ({} for none): the daemon's own requests to its runtimes
    (health checks, token rotation, scrapes, feedback rows) build it here."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def sha256_hex(token: str | bytes) -> str:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).hexdigest()


def _hash(value: str) -> bytes | None:
    value = value.strip().lower()
    if not value:
        return None
    if len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError("a token hash must be 64 hexadecimal characters (SHA-256)")
    return bytes.fromhex(value)


class Auth:
    """Which routes need which token, and the check itself."""

    def __init__(
        self,
        *,
        token_sha256: str = "",
        admin_sha256: str = "",
        public: bool = False,
        health_open: bool = True,
        metrics_open: bool = True,
    ) -> None:
        self.token = _hash(token_sha256)
        self.admin = _hash(admin_sha256)
        self.public = public
        """The prediction and feedback routes need a token (on both ports)."""
        self.health_open = health_open
        self.metrics_open = metrics_open

    @classmethod
    def from_env(cls, env: MutableMapping[str, str]) -> Auth:
        """The settings the daemon passed; they are removed from ``env`` (a model's code never sees them)."""
        values = {name: env.pop(name, "") for name in ENV_ALL[:5]}
        auth = values[ENV_AUTH].strip().lower()
        if auth not in ("", "on", "off"):
            raise ValueError(f"{ENV_AUTH} must be on or off, not {auth[:20]!r}")
        return cls(
            token_sha256=values[ENV_TOKEN],
            admin_sha256=values[ENV_ADMIN],
            public=auth == "on",
            health_open=values[ENV_HEALTH_OPEN].strip() not in ("0", "false", "off"),
            metrics_open=values[ENV_METRICS_OPEN].strip() not in ("0", "false", "off"),
        )

    def set_token(self, token_sha256: str) -> None:
        self.token = _hash(token_sha256)

    def presented(self, authorization: bytes) -> int:
        """ADMIN, CLIENT or NONE for an ``Authorization`` header value; both hashes are always compared
        (``hmac.compare_digest``), so the time taken says nothing about which one matched or how far."""
        if authorization[:7].lower() != _BEARER:
            return NONE
        digest = hashlib.sha256(authorization[7:].strip()).digest()
        is_admin = self.admin is not None and hmac.compare_digest(digest, self.admin)
        is_client = self.token is not None and hmac.compare_digest(digest, self.token)
        return ADMIN if is_admin else CLIENT if is_client else NONE


#: how often (at most) a new connection looks whether the certificate or key files changed
RELOAD_CHECK_SECONDS = 1.0


def _server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def _signature(*paths: str) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in paths:
        st = os.stat(path)
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class ReloadingContext(ssl.SSLContext):
    """The listener's context: each new connection (``wrap_bio``, which asyncio calls once per accepted
    connection) gets a context loaded from the certificate and key files as they are now, looked at (``stat``)
    at most once a second, so a renewed certificate serves new connections without a restart; connections
    already open keep theirs. A pair that does not load (e.g. the key not yet replaced) keeps the previous one
    and is tried again on the next check."""

    def __new__(cls, cert: str, key: str) -> ReloadingContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self, cert: str, key: str) -> None:
        self.paths = (cert, key)
        self.current = _server_context(cert, key)
        self.seen = _signature(cert, key)
        self.checked = time.monotonic()

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self.checked < RELOAD_CHECK_SECONDS:
            return
        self.checked = now
        try:
            seen = _signature(*self.paths)
            if seen == self.seen:
                return
            self.current = _server_context(*self.paths)
        except (OSError, ssl.SSLError) as exc:
            print(f"modeltui-serving: keeping the previous TLS certificate: {exc}", file=sys.stderr, flush=True)
            return
        self.seen = seen
        print("modeltui-serving: TLS certificate reloaded", file=sys.stderr, flush=True)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._refresh()
        return self.current.wrap_bio(*args, **kwargs)


def tls_context(env: MutableMapping[str, str]) -> ssl.SSLContext | None:
    """A server context from ``MODELTUI_TLS_CERT`` / ``MODELTUI_TLS_KEY`` (PEM files), or None when unset;
    it reloads the files when they change (:class:`ReloadingContext`)."""
    cert = env.pop(ENV_TLS_CERT, "")
    key = env.pop(ENV_TLS_KEY, "")
    if not cert and not key:
        return None
    if not cert or not key:
        raise ValueError(f"TLS needs both {ENV_TLS_CERT} and {ENV_TLS_KEY}")
    return ReloadingContext(cert, key)


__all__ = ["ADMIN", "CLIENT", "NONE", "Auth", "sha256_hex", "tls_context"]
