"""The daemon's three HTTP clients of its runtimes (health checks and token rotation, metric scrapes, feedback
rows) present a token with one helper, ``daemon.serving.auth.bearer``, in the form the runtime's own check
(``Auth.presented``) accepts; without a token they send no ``Authorization`` header at all. A real local HTTP
server records what each one sent."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from daemon.deploy.health import http_status
from daemon.maintain import feedback
from daemon.monitor.scrape import fetch
from daemon.serving.auth import ADMIN, CLIENT, NONE, Auth, bearer, sha256_hex

CLIENT_TOKEN = "client-" + "c" * 30
ADMIN_TOKEN = "admin-" + "a" * 30
PAGE = json.dumps({"instance": "i", "columns": [], "rows": [], "first": 0, "last": 0}).encode()


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        Recorder.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def sent(call: Callable[[], object]) -> str | None:
    """The ``Authorization`` header of the one request ``call`` made (None: no such header)."""
    Recorder.seen.clear()
    made = call()
    if asyncio.iscoroutine(made):
        asyncio.run(made)
    assert len(Recorder.seen) == 1
    return Recorder.seen[0]


def test_bearer_is_the_header_the_runtime_accepts() -> None:
    auth = Auth(token_sha256=sha256_hex(CLIENT_TOKEN), admin_sha256=sha256_hex(ADMIN_TOKEN), public=True)
    assert bearer(None) == {}
    assert bearer("") == {}
    assert auth.presented(bearer(CLIENT_TOKEN)["Authorization"].encode()) == CLIENT
    assert auth.presented(bearer(ADMIN_TOKEN)["Authorization"].encode()) == ADMIN
    assert auth.presented(bearer("other")["Authorization"].encode()) == NONE


@pytest.mark.parametrize("token", [ADMIN_TOKEN, None])
def test_health_scrape_and_feedback_send_the_same_header(port: int, token: str | None) -> None:
    want = bearer(token).get("Authorization")
    assert sent(lambda: http_status(port, token=token, within=60)) == want
    assert sent(lambda: fetch("127.0.0.1", port, token=token)) == want
    source = feedback.Source(deployment="d", version=1, admin_url=f"http://127.0.0.1:{port}", token=token)
    assert sent(lambda: feedback.fetch(source, 0)) == want
