"""Malformed, oversized, unknown and hostile frames against a real daemon: each gets a clear error, and the
daemon keeps serving everyone."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.protocol.frames import MAX_FRAME_BYTES
from tests.conftest import DaemonProcess, make_model_dir
from tests.integration.rawsock import RawClient

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _close_raw_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every RawClient a test opens is closed at teardown (warnings are errors here)."""
    opened: list[RawClient] = []
    original = RawClient.__init__

    def tracking_init(self: RawClient, *args: Any, **kwargs: Any) -> None:
        opened.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(RawClient, "__init__", tracking_init)
    yield
    for c in opened:
        c.close()


def assert_serving(daemon: DaemonProcess) -> None:
    c = RawClient(daemon.socket)
    try:
        assert c.request({"op": "ping"})["type"] == "response"
    finally:
        c.close()


def test_first_frame_must_be_hello(daemon: DaemonProcess) -> None:
    c = RawClient(daemon.socket, hello=False)
    c.send({"type": "request", "id": 1, "request": {"op": "ping"}})
    reply = c.recv()
    assert reply["type"] == "error"
    assert reply["code"] == "BAD_FRAME"
    assert "hello" in reply["message"]
    assert_serving(daemon)


def test_protocol_mismatch_says_what_to_do(daemon: DaemonProcess) -> None:
    c = RawClient(daemon.socket, hello=False)
    c.send({"type": "hello", "protocol": 99, "client": "future"})
    reply = c.recv()
    assert reply["code"] == "PROTOCOL_MISMATCH"
    assert "upgrade" in reply["message"]
    assert reply["data"] == {"daemon": 1, "client": 99}


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{not json\n", "BAD_FRAME"), (b"[1, 2, 3]\n", "BAD_FRAME"), (b"\xff\xfe\n", "BAD_FRAME"),
     (b'{"type": "request"}\n', "UNKNOWN_OP")],
)
def test_garbage_without_an_id_is_answered_then_the_connection_closed(
    daemon: DaemonProcess, raw: bytes, code: str
) -> None:
    c = RawClient(daemon.socket)
    c.send_bytes(raw)
    reply = c.recv_reply()
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert reply["id"] is None
    with pytest.raises(ConnectionError):
        c.recv()  # nothing could be attributed to a request: the peer is not speaking the protocol
    assert_serving(daemon)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"type": "response", "id": 1, "result": {}}\n', "BAD_FRAME"),
        (b'{"type": "request", "id": 5, "request": {"op": "rm -rf /"}}\n', "UNKNOWN_OP"),
        (b'{"type": "request", "id": 5, "request": {"op": "versions.log"}}\n', "INVALID"),
        (b'{"type": "request", "id": 5, "request": {"op": "ping", "x": 1}}\n', "INVALID"),
        (b'{"type": "request", "id": 5, "request": {"op": "versions.log", "name": "m", "limit": "all"}}\n', "INVALID"),
    ],
)
def test_malformed_requests_with_an_id_get_errors_and_connection_survives(
    daemon: DaemonProcess, raw: bytes, code: str
) -> None:
    c = RawClient(daemon.socket)
    c.send_bytes(raw)
    reply = c.recv_reply()
    assert reply["type"] == "error"
    assert reply["code"] == code, reply
    assert reply["message"]
    assert c.request({"op": "ping"}, req_id=6)["type"] == "response"  # same connection still usable


def test_oversized_frame_is_refused_and_the_daemon_keeps_serving(daemon: DaemonProcess) -> None:
    c = RawClient(daemon.socket)
    big = b'{"type": "request", "id": 1, "request": {"op": "ping", "pad": "' + b"x" * (MAX_FRAME_BYTES + 10) + b'"}}\n'
    with contextlib.suppress(BrokenPipeError):  # the daemon may hang up before we finish sending
        c.send_bytes(big)
    reply = c.recv_reply()
    assert reply["code"] == "FRAME_TOO_LARGE"
    assert "closing" in reply["message"]
    assert_serving(daemon)


@pytest.mark.parametrize(
    "name",
    ["../etc", "a/b", "a\x00b", "bad\x1b[2Jname", "\x07bell", "x" * 10_240, "", "..", "name with space"],
)
def test_hostile_names_are_invalid(daemon: DaemonProcess, name: str) -> None:
    c = RawClient(daemon.socket)
    for body in (
        {"op": "versions.log", "name": name},
        {"op": "versions.show", "ref": name},
        {"op": "aliases.set", "name": "m", "alias": name, "version": 1},
        {"op": "models.get", "name": name},
    ):
        reply = c.request(body)
        assert reply["type"] == "error"
        assert reply["code"] == "INVALID", reply
        assert len(reply["message"]) < 2000  # the 10 KB name is not echoed back whole
    assert_serving(daemon)


def test_missing_refs_are_not_found(daemon: DaemonProcess, tmp_path: Path) -> None:
    make_model_dir(tmp_path / "m", "present")
    assert daemon.cli("push", str(tmp_path / "m")).returncode == 0
    c = RawClient(daemon.socket)
    cases = {
        "absent": "'absent'",
        "present:9": "no version 9",
        "present@production": "production",
    }
    for ref, words in cases.items():
        reply = c.request({"op": "versions.show", "ref": ref})
        assert reply["code"] == "NOT_FOUND"
        assert words in reply["message"], reply["message"]


def test_upload_without_its_descriptors_is_invalid(daemon: DaemonProcess) -> None:
    c = RawClient(daemon.socket)
    reply = c.request({"op": "objects.upload", "files": [{"path": "a", "size": 1}, {"path": "b", "size": 1}]})
    assert reply["code"] == "INVALID"
    assert "descriptor" in reply["message"]
    assert_serving(daemon)


def test_upload_of_a_pipe_or_wrong_size_is_invalid(daemon: DaemonProcess, tmp_path: Path) -> None:
    c = RawClient(daemon.socket)
    r_fd, w_fd = os.pipe()
    try:
        reply = c.request({"op": "objects.upload", "files": [{"path": "p", "size": 0}]}, fds=[r_fd])
        assert reply["code"] == "INVALID"
    finally:
        os.close(r_fd)
        os.close(w_fd)
    f = tmp_path / "f.bin"
    f.write_bytes(b"12345")
    fd = os.open(f, os.O_RDONLY)
    try:
        reply = c.request({"op": "objects.upload", "files": [{"path": "f.bin", "size": 99}]}, req_id=2, fds=[fd])
        assert reply["code"] == "INVALID"
        assert "size" in reply["message"] or "bytes" in reply["message"]
    finally:
        os.close(fd)
    assert_serving(daemon)


def test_descriptors_of_a_rejected_frame_never_reach_the_next_request(daemon: DaemonProcess, tmp_path: Path) -> None:
    secret, public = tmp_path / "secret.bin", tmp_path / "public.bin"
    secret.write_bytes(b"secret!")
    public.write_bytes(b"public!")  # same size: only the content can tell them apart
    c = RawClient(daemon.socket)
    fd_secret, fd_public = os.open(secret, os.O_RDONLY), os.open(public, os.O_RDONLY)
    try:
        bad = c.request({"op": "objects.upload", "files": [{"path": "../x", "size": 7}]}, req_id=1, fds=[fd_secret])
        assert bad["code"] == "INVALID"
        good = c.request({"op": "objects.upload", "files": [{"path": "p.bin", "size": 7}]}, req_id=2, fds=[fd_public])
    finally:
        os.close(fd_secret)
        os.close(fd_public)
    assert good["type"] == "response"
    assert good["result"]["items"][0]["sha256"] == hashlib.sha256(b"public!").hexdigest()


def test_descriptor_count_must_match(daemon: DaemonProcess, tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"x")
    c = RawClient(daemon.socket)
    fd = os.open(f, os.O_RDONLY)
    try:
        reply = c.request({"op": "ping"}, fds=[fd])
    finally:
        os.close(fd)
    assert reply["code"] == "INVALID"
    assert "0 descriptors, 1 came" in reply["message"]
    assert_serving(daemon)


def test_push_of_objects_never_uploaded_is_invalid(daemon: DaemonProcess) -> None:
    c = RawClient(daemon.socket)
    reply = c.request({"op": "versions.push", "files": [{"path": "modeltui.toml", "sha256": "b" * 64, "size": 3}]})
    assert reply["code"] == "INVALID"


def test_manifest_with_wrong_types_is_refused_by_cli_and_daemon(daemon: DaemonProcess, tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "m", "typed")
    (d / "modeltui.toml").write_text('name = "typed"\nflavor = "sklearn"\nmodel_file = 7\n')
    res = daemon.cli("push", str(d))
    assert res.returncode == 4
    assert "model_file" in res.stderr
    assert_serving(daemon)


def test_many_connections_and_abrupt_disconnects(daemon: DaemonProcess) -> None:
    clients = [RawClient(daemon.socket) for _ in range(30)]
    for i, c in enumerate(clients):
        c.send({"type": "request", "id": i, "request": {"op": "daemon.status"}})
    for c in clients[::2]:
        c.close()  # hang up before reading the reply
    for c in clients[1::2]:
        assert c.recv_reply()["type"] == "response"
        c.close()
    assert_serving(daemon)


def test_upload_of_a_descriptor_not_open_for_reading_is_invalid(daemon: DaemonProcess, tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    c = RawClient(daemon.socket)
    for flags in (os.O_WRONLY, os.O_PATH):
        fd = os.open(f, flags)
        try:
            reply = c.request({"op": "objects.upload", "files": [{"path": "f.bin", "size": 3}]}, fds=[fd])
        finally:
            os.close(fd)
        assert reply["code"] == "INVALID"
        assert "open for reading" in reply["message"]


def test_one_trip_push_validates_like_the_two_step_one(daemon: DaemonProcess, tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "m", "onetrip")
    c = RawClient(daemon.socket)
    fd = os.open(d / "model.skops", os.O_RDONLY)
    try:  # no manifest among the files
        reply = c.request({"op": "versions.push_files", "files": [{"path": "model.skops", "size": 2}]}, fds=[fd])
    finally:
        os.close(fd)
    assert reply["code"] == "INVALID"
    assert "modeltui.toml" in reply["message"]
    r_fd, w_fd = os.pipe()
    try:
        reply = c.request({"op": "versions.push_files", "files": [{"path": "x", "size": 0}]}, req_id=2, fds=[r_fd])
    finally:
        os.close(r_fd)
        os.close(w_fd)
    assert reply["code"] == "INVALID"
    assert_serving(daemon)


async def test_pipelined_uploads_on_one_connection_keep_their_own_files(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """Concurrent requests on one connection: each upload stores exactly its own descriptor's bytes."""
    from daemon.protocol import requests as q
    from daemon.protocol import results as r
    from modeltui.client import connect

    paths = []
    for i in range(8):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(f"content {i}".encode())  # equal sizes: only the bytes tell them apart
        paths.append(p)
    client = await connect(daemon.socket)
    try:

        async def upload(p: Path) -> str:
            fd = os.open(p, os.O_RDONLY)
            try:
                reply = await client.send(q.Upload(files=[q.UploadFile(path=p.name, size=p.stat().st_size)]), fds=[fd])
            finally:
                os.close(fd)
            return r.UploadResult.model_validate_json(reply.raw).items[0].sha256

        for _ in range(5):
            digests = await asyncio.gather(*(upload(p) for p in paths), client.call(q.Ping(), r.Pong))
            assert list(digests[:-1]) == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    finally:
        await client.close()
