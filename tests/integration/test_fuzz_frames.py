"""Random frames against a real daemon: every one is answered with a response or a typed error (or, when
it carries no usable id, an error and a closed connection), and the daemon keeps serving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.protocol.errors import ErrorCode
from daemon.server import KNOWN_OPS
from tests.helpers.daemon import DaemonProcess, daemon_env
from tests.helpers.rawsock import RawClient

pytestmark = pytest.mark.integration

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False),
    st.text(max_size=40), st.sampled_from(["m", "m:1", "m@production", "../x", "a\x00b", "", "x" * 300]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["name", "ref", "a", "b", "alias", "version", "reason", "limit", "offset", "query", "files", "topics", "set",
     "unset", "force", "dry_run", "description", "at", "message", "tags", "source", "path", "size", "x"]
)
bodies = st.fixed_dictionaries(
    # Every op but daemon.stop, which would (rightly) stop the daemon under test.
    {"op": st.one_of(st.sampled_from(sorted(KNOWN_OPS - {"daemon.stop"})), st.text(max_size=12))},
    optional={"name": st.sampled_from(["m", "nope"])},
).flatmap(lambda base: st.dictionaries(field_names, values, max_size=5).map(lambda extra: {**extra, **base}))
frames_ = st.one_of(
    bodies.map(lambda body: {"type": "request", "id": 7, "request": body}),
    st.dictionaries(st.sampled_from(["type", "id", "request", "junk"]), values, max_size=4),
)

CODES = {c.value for c in ErrorCode}


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("fuzz")
    (base / "home").mkdir()
    env = daemon_env(base)
    d = DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env).start()
    yield d
    d.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames_)
def test_any_frame_gets_a_typed_answer(shared_daemon: DaemonProcess, frame: dict[str, Any]) -> None:
    c = RawClient(shared_daemon.socket)
    try:
        c.send_bytes(json.dumps(frame).encode() + b"\n")
        reply = c.recv_reply()
        assert reply["type"] in ("response", "error")
        if reply["type"] == "error":
            assert reply["code"] in CODES
            assert reply["code"] != "INTERNAL", reply  # bad input is never an internal error
            assert reply["message"]
    finally:
        c.close()
    assert shared_daemon.ping()
