"""Malformed, oversized, unknown and hostile frames against a real daemon: each gets a clear error, and the
daemon keeps serving everyone."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.protocol.frames import MAX_FRAME_BYTES
from tests.helpers.daemon import DaemonProcess
from tests.helpers.models import make_model_dir
from tests.helpers.rawsock import RawClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def daemon(module_daemon: DaemonProcess) -> DaemonProcess:
    """One daemon for the module: each test here is refused, reads, or pushes a name of its own. The tests
    that count log lines, or check out ``m:1`` as they pushed it, start their own from ``daemon_factory``."""
    return module_daemon


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
            digests = await asyncio.gather(*(upload(p) for p in paths), client.call(q.Ping()))
            assert list(digests[:-1]) == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    finally:
        await client.close()


# -- issue 13: hostile input that used to reach an internal error ---------------------------------------------

TOO_BIG = 2**63  # one past SQLite's largest INTEGER


def push_raw(c: RawClient, files: dict[str, bytes], tmp_path: Path, req_id: int = 1) -> dict[str, Any]:
    """A one-trip push of exactly these files (paths a client's directory scan could never produce)."""
    fds = []
    specs = []
    for i, (rel, data) in enumerate(files.items()):
        local = tmp_path / f"raw-{req_id}-{i}"
        local.write_bytes(data)
        fds.append(os.open(local, os.O_RDONLY))
        specs.append({"path": rel, "size": len(data)})
    try:
        return c.request({"op": "versions.push_files", "files": specs}, req_id=req_id, fds=fds)
    finally:
        for fd in fds:
            os.close(fd)


def manifest(name: str, extra: str = "") -> bytes:
    return f'name = "{name}"\nflavor = "sklearn"\nmodel_file = "model.skops"\n{extra}'.encode()


OUT_OF_RANGE = [
    ({"op": "models.list", "offset": TOO_BIG}, "offset"),
    ({"op": "aliases.set", "name": "m", "alias": "prod", "version": TOO_BIG}, "version"),
    ({"op": "aliases.set", "name": "m", "alias": "prod", "version": -TOO_BIG - 1}, "version"),
    ({"op": "maintain.show", "run": TOO_BIG}, "run"),
    ({"op": "store.gc", "grace_seconds": TOO_BIG}, "grace_seconds"),
    ({"op": "versions.log", "name": "m", "offset": TOO_BIG}, "offset"),
]
IN_RANGE = [
    {"op": "models.list", "offset": TOO_BIG - 1},
    {"op": "aliases.set", "name": "m", "alias": "prod", "version": TOO_BIG - 1},
    {"op": "maintain.show", "run": TOO_BIG - 1},
    {"op": "maintain.decide", "run": TOO_BIG - 1, "approve": False},
    {"op": "store.gc", "grace_seconds": TOO_BIG - 1},
    {"op": "versions.log", "name": "m", "offset": TOO_BIG - 1},
    {"op": "versions.checkout", "ref": "m", "offset": TOO_BIG - 1},
]


def test_integers_beyond_64_bits_are_invalid_naming_the_field_and_the_largest_are_answered(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    assert daemon.cli("push", str(make_model_dir(tmp_path / "m", "m"))).returncode == 0
    c = RawClient(daemon.socket)
    for body, field in OUT_OF_RANGE:
        reply = c.request(body)
        assert reply["code"] == "INVALID", reply
        assert f"{field}: " in reply["message"]
    for body in IN_RANGE:  # a typed answer (a result, NOT_FOUND, INVALID…), never INTERNAL
        reply = c.request(body)
        assert reply.get("code") != "INTERNAL", reply
    assert_serving(daemon)


def test_alias_history_at_a_time_outside_the_utc_range_is_invalid(daemon: DaemonProcess, tmp_path: Path) -> None:
    assert daemon.cli("push", str(make_model_dir(tmp_path / "m", "m"))).returncode == 0
    c = RawClient(daemon.socket)
    reply = c.request({"op": "aliases.history", "name": "m", "at": "0001-01-01T00:00:00+14:00"})
    assert reply["code"] == "INVALID", reply
    assert "at: " in reply["message"]
    assert "1-9999" in reply["message"]
    ok = c.request({"op": "aliases.history", "name": "m", "at": "0001-01-01T00:00:00-14:00"}, req_id=2)
    assert ok["type"] == "response"
    assert ok["result"]["targets_at"] == {}
    res = daemon.cli("alias", "history", "m", "--at", "0001-01-01T00:00:00+14:00")
    assert res.returncode == 2  # a bad option value, said before anything is sent
    assert "1-9999" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_subscriber_that_never_reads_is_dropped_with_a_last_frame_saying_why(
    daemon_factory: Any, tmp_path: Path
) -> None:
    from daemon.server import MAX_QUEUED_EVENTS

    daemon: DaemonProcess = daemon_factory().start()  # it counts the daemon's log lines

    assert daemon.cli("push", str(make_model_dir(tmp_path / "m", "m"))).returncode == 0
    sleeper = RawClient(daemon.socket)
    assert sleeper.request({"op": "subscribe", "topics": ["registry"]})["type"] == "response"
    publisher = RawClient(daemon.socket)
    published = 2_000
    for start in range(0, published, 50):  # tags, pipelined 50 at a time: one registry event each
        for i in range(start, start + 50):
            tag = {"op": "versions.tag", "ref": "m:1", "set": {"n": str(i)}}
            publisher.send({"type": "request", "id": i, "request": tag})
        for _ in range(50):
            assert publisher.recv_reply()["type"] == "response"
    assert_serving(daemon)  # everyone else is served meanwhile
    events, last = 0, None
    with contextlib.suppress(ConnectionError):
        while True:  # now read what the daemon kept for it: part of the events, a reason, then the end
            last = sleeper.recv()
            events += last["type"] == "event"
    assert last is not None
    assert last["type"] == "error", last
    assert last["code"] == "UNAVAILABLE"
    assert last["id"] is None
    assert "behind" in last["message"]
    assert last["data"]["reason"] == "slow_subscriber"
    # Only what the kernel's socket buffer already held arrives: the daemon forgot its queue when it dropped
    # the subscriber, and queued nothing after.
    assert 0 < events < MAX_QUEUED_EVENTS < published
    log = (daemon.state_dir.parent / "daemon.out").read_text()
    assert log.count("dropping a subscriber") == 1


def test_a_push_with_a_file_that_is_also_a_directory_is_refused(daemon: DaemonProcess, tmp_path: Path) -> None:
    c = RawClient(daemon.socket)
    files = {"modeltui.toml": manifest("clash"), "model.skops": b"w", "a": b"file", "a/b": b"nested"}
    reply = push_raw(c, files, tmp_path)
    assert reply["code"] == "INVALID", reply
    assert "path a is also a directory" in reply["message"]
    assert c.request({"op": "models.get", "name": "clash"}, req_id=2)["code"] == "NOT_FOUND"  # nothing stored


CONTROL_CHARACTERS = [
    ('[signature]\ninputs = [{name = "x\\u001b[2J", type = "double"}]\n', "signature.inputs.0.name"),
    ('[params]\nkernel = "rbf\\u001b]0;owned\\u0007"\n', "params.kernel"),
    ('requirements = ["numpy\\r\\nforged line"]\n', "requirements.0"),
]


def test_control_characters_in_manifest_strings_are_invalid_naming_the_field(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    c = RawClient(daemon.socket)
    for i, (extra, field) in enumerate(CONTROL_CHARACTERS):
        reply = push_raw(c, {"modeltui.toml": manifest("ctl", extra), "model.skops": b"w"}, tmp_path, req_id=i)
        assert reply["code"] == "INVALID", reply
        assert field in reply["message"]
        assert "control character" in reply["message"]
    d = make_model_dir(tmp_path / "ctl", "ctl")
    (d / "modeltui.toml").write_bytes(manifest("ctl", CONTROL_CHARACTERS[0][0]))
    res = daemon.cli("push", str(d))
    assert res.returncode == 4, res.stderr
    assert CONTROL_CHARACTERS[0][1] in res.stderr
    assert "\x1b" not in res.stderr


def test_a_deeply_nested_manifest_is_refused_by_client_and_daemon(daemon: DaemonProcess, tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "deep", "deep")
    (d / "modeltui.toml").write_bytes(manifest("deep", "x = " + "[" * 5000 + "]" * 5000 + "\n"))
    res = daemon.cli("push", str(d))
    assert res.returncode == 4
    assert "nested too deeply" in res.stderr
    assert "Traceback" not in res.stderr
    c = RawClient(daemon.socket)
    reply = push_raw(c, {"modeltui.toml": manifest("deep", "x = " + "[" * 900 + "]" * 900 + "\n"), "model.skops": b"w"},
                     tmp_path)  # fmt: skip
    assert reply["code"] == "INVALID", reply
    assert "nested too deeply" in reply["message"]
    assert_serving(daemon)


@pytest.mark.parametrize("obstacle", ["directory", "parent-is-a-file"])
def test_checkout_force_over_what_is_in_the_way_is_a_conflict(
    daemon_factory: Any, tmp_path: Path, obstacle: str
) -> None:
    daemon: DaemonProcess = daemon_factory().start()  # its m:1 is the version it pushes
    src = make_model_dir(tmp_path / "m", "m", extra={"sub/data.csv": b"x\n1\n"})
    assert daemon.cli("push", str(src)).returncode == 0
    dest = tmp_path / "out"
    if obstacle == "directory":  # a directory where the version has a file
        (dest / "model.skops").mkdir(parents=True)
        (dest / "model.skops" / "keep").write_text("mine")
    else:  # a file where the version has a directory
        dest.mkdir()
        (dest / "sub").write_text("mine")
    res = daemon.cli("checkout", "m:1", str(dest), "--force")
    assert res.returncode == 5, res.stderr
    assert "modeltui-tmp" not in res.stderr
    assert "Traceback" not in res.stderr
    assert "directory" in res.stderr
    assert not list(tmp_path.rglob("*.modeltui-tmp"))


def test_clients_that_hang_up_on_refused_requests_leave_no_tracebacks(daemon_factory: Any) -> None:
    daemon: DaemonProcess = daemon_factory().start()  # it reads what the daemon logs meanwhile
    log = daemon.state_dir.parent / "daemon.out"
    before = log.stat().st_size
    for _ in range(2):
        clients = [RawClient(daemon.socket) for _ in range(50)]
        for c in clients:
            for i in range(4):  # refused by the handler (NOT_FOUND) and by validation (INVALID)
                c.send({"type": "request", "id": i, "request": {"op": "models.get", "name": f"absent{i}"}})
            c.send({"type": "request", "id": 9, "request": {"op": "versions.log", "name": "m", "limit": "x"}})
        for c in clients:  # hang up at once, with a reset: nothing can be answered any more
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
    assert_serving(daemon)
    grown = log.read_text(errors="replace")[before:]
    assert "Traceback" not in grown
    assert "BrokenPipeError" not in grown
    assert len(grown) < 10_000
