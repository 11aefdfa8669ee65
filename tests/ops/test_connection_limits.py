"""Connection limits with real uids, against a real daemon in system mode (issue 15: one user with no role
could hold every slot after ``hello``, admins included).

The daemon runs as ``mtui-svc`` with small limits: 6 connections, the last 2 for admins, 3 per uid, 2 s idle
timeout. ``mtui-alice`` and ``mtui-bob`` (both in the socket's group) hold connections from processes of their
own, subscribed like the TUI so that the idle timeout leaves them open; root is an admin.
"""

from __future__ import annotations

import json
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.daemon import DaemonProcess
from tests.helpers.rawsock import RawClient
from tests.helpers.real_users import SERVICE, USERS, python_for_users, system_daemon_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONFIG = (
    "[daemon]\nmax_clients = 6\nadmin_reserved_clients = 2\nmax_clients_per_uid = 3\nidle_timeout_seconds = 2\n"
    f'[access]\nviewers = ["@{SERVICE}"]\n[exporter]\nenabled = false\n'
)

#: Opens N connections as whoever runs it, says hello on each, subscribes the welcomed ones, prints each
#: connection's answer (the subscribe's response, or the refusal), then holds them until stdin closes.
HOLD = r"""
import json, socket, sys
path, n = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    s.sendall(b'{"type": "hello", "protocol": 1, "client": "hold"}\n')
    f = s.makefile("rb")
    first = json.loads(f.readline())
    if first["type"] == "welcome":
        s.sendall(b'{"type": "request", "id": 1, "request": {"op": "subscribe", "topics": ["registry"]}}\n')
        first = json.loads(f.readline())
    print(json.dumps(first), flush=True)
    held.append((s, f))
sys.stdin.read()
"""


class Holder:
    """``n`` connections held by a process of ``user``; ``answers``: what each got (in order)."""

    def __init__(self, d: DaemonProcess, user: str, n: int) -> None:
        pw = pwd.getpwnam(user)
        self.proc = subprocess.Popen([python_for_users(), "-c", HOLD, str(d.socket), str(n)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, user=pw.pw_uid,
                                     group=pw.pw_gid, extra_groups=USERS[user])  # fmt: skip
        assert self.proc.stdout is not None
        self.answers: list[dict[str, Any]] = []
        for _ in range(n):
            line = self.proc.stdout.readline()
            assert line, self.proc.stderr.read() if self.proc.stderr else ""
            self.answers.append(json.loads(line))

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def settle(d: DaemonProcess) -> None:
    """Wait until the daemon serves nobody but the asking connection (the previous test's are gone), then
    until it has closed that one too (it closes its end once it has forgotten the connection)."""
    deadline = time.monotonic() + 20
    while True:
        c = RawClient(d.socket)
        try:
            clients = c.request({"op": "daemon.status"})["result"]["clients"]
            c.sock.shutdown(socket.SHUT_WR)
            while c.sock.recv(65536):
                pass
        finally:
            c.close()
        if clients == 1:
            return
        assert time.monotonic() < deadline, f"{clients} connections still open"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def limited_daemon() -> Iterator[DaemonProcess]:
    yield from system_daemon_process(CONFIG, "mtui-limits-")


def test_a_user_past_the_per_uid_cap_is_refused_others_are_not(limited_daemon: DaemonProcess) -> None:
    d = limited_daemon
    settle(d)
    alice = Holder(d, "mtui-alice", 4)
    try:
        assert [a["type"] for a in alice.answers] == ["response"] * 3 + ["error"], alice.answers
        refused = alice.answers[3]
        assert refused["code"] == "UNAVAILABLE"
        assert refused["data"] == {"limit": "max_clients_per_uid"}
        assert "already has 3 connections open (max_clients_per_uid in [daemon])" in refused["message"]
        # The real client says so too.
        env = {k: v for k, v in d.env.items() if not k.startswith("MODELTUI_")} | {"HOME": "/nonexistent"}
        pw = pwd.getpwnam("mtui-alice")
        got = subprocess.run([python_for_users(), "-m", "modeltui", "--socket", str(d.socket), "--no-start", "daemon",
                              "status"], env=env, user=pw.pw_uid, group=pw.pw_gid, extra_groups=USERS["mtui-alice"],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert got.returncode != 0
        assert "max_clients_per_uid" in " ".join(got.stderr.split()), got.stderr
        # Refused twice, logged once (at most once a minute per uid: a flood of connections is not one of lines).
        logged = (d.state_dir / "daemon.log").read_text()
        assert logged.count(f"refusing a connection of uid {pw.pw_uid}:") == 1, logged[-2000:]
        bob = Holder(d, "mtui-bob", 1)  # another user still gets in
        try:
            assert [a["type"] for a in bob.answers] == ["response"], bob.answers
        finally:
            bob.release()
    finally:
        alice.release()


def test_the_last_slots_are_kept_for_admins(limited_daemon: DaemonProcess) -> None:
    d = limited_daemon
    settle(d)
    alice = Holder(d, "mtui-alice", 3)
    bob = Holder(d, "mtui-bob", 2)  # the 4th connection is the last one for everyone; the 5th is an admin's
    roots: list[RawClient] = []
    try:
        assert [a["type"] for a in alice.answers + bob.answers] == ["response"] * 4 + ["error"]
        refused = bob.answers[1]
        assert refused["data"] == {"limit": "admin_reserved_clients"}
        assert "the other 2 are kept for admins" in refused["message"]
        for _ in range(2):  # root (an admin) gets both reserved slots, and is served on them
            roots.append(RawClient(d.socket))
            assert roots[-1].request({"op": "ping"})["type"] == "response"
        status = roots[-1].request({"op": "daemon.status"}, req_id=2)
        assert status["result"]["clients"] == 6
        full = RawClient(d.socket, hello=False)  # past max_clients even an admin is refused, with the reason
        try:
            full.send({"type": "hello", "protocol": 1, "client": "raw-test"})
            answer = full.recv()
            assert answer["data"] == {"limit": "max_clients"}, answer
            with pytest.raises(ConnectionError):
                full.recv()
        finally:
            full.close()
    finally:
        for c in roots:
            c.close()
        alice.release()
        bob.release()


def test_an_idle_connection_is_closed_a_subscribed_one_is_not(limited_daemon: DaemonProcess) -> None:
    d = limited_daemon
    settle(d)
    subscribed = RawClient(d.socket)
    idle = RawClient(d.socket)
    try:
        assert subscribed.request({"op": "subscribe", "topics": ["deployments"]})["type"] == "response"
        idle.sock.settimeout(20)  # the timeout is 2 s: only a hang waits this long
        farewell = idle.recv()
        assert farewell["type"] == "error"
        assert farewell["data"]["reason"] == "idle"
        assert "idle for 2 s (idle_timeout_seconds in [daemon])" in farewell["message"]
        with pytest.raises(ConnectionError):
            idle.recv()
        # Idle as long and longer, but subscribed: still served.
        assert subscribed.request({"op": "ping"}, req_id=2)["type"] == "response"
    finally:
        subscribed.close()
        idle.close()
