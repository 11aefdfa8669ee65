"""Contexts against two real daemons on two sockets, one reached through a real ssh to 127.0.0.1 (a real sshd
with keys the test made) and ``modeltui-bridge``: what a user of ``--context`` and ``modeltui ctx`` sees."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modeltui.client import DaemonUnavailable
from modeltui.contexts import Context, open_client
from tests.helpers.daemon import DaemonProcess, daemon_env
from tests.helpers.models import make_model_dir
from tests.helpers.sshd import BRIDGE, SshServer, closed_port
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.integration


@dataclass
class Hosts:
    here: DaemonProcess
    there: DaemonProcess
    env: dict[str, str]
    marked_socket: str
    """``there``'s socket spelt with a doubled slash: only the no-orphans test's processes carry it."""

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modeltui", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip

    def json(self, *args: str) -> Any:
        res = self.cli(*args, "--json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)


def _daemon(base: Path) -> DaemonProcess:
    (base / "home").mkdir(parents=True)
    env = daemon_env(base)
    return DaemonProcess(Path(env["MODELTUI_STATE_DIR"]), Path(env["MODELTUI_SOCKET"]), env=env).start()


@pytest.fixture(scope="module")
def hosts(sshd: SshServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    base = tmp_path_factory.mktemp("contexts")
    here, there = _daemon(base / "here"), _daemon(base / "there")
    marked = str(there.socket).replace("/run/", "//run/")
    remote = f'ssh = "{sshd.host}"\nbridge = "{BRIDGE}"\nssh_args = {json.dumps(list(sshd.ssh_args))}\n'
    config = base / "client.toml"
    config.write_text(
        f'[contexts.remote]\n{remote}remote_socket = "{there.socket}"\n'
        f'[contexts.marked]\n{remote}remote_socket = "{marked}"\n'
        f'[contexts.ro]\nsocket = "{here.socket}"\nreadonly = true\n'
        f'[contexts.down]\nssh = "{sshd.host}"\nbridge = "{BRIDGE}"\n'
        f'ssh_args = {json.dumps([*sshd.ssh_args, "-p", str(closed_port())])}\n'
    )
    env = dict(here.env, MODELTUI_CLIENT_CONFIG=str(config))
    try:
        yield Hosts(here, there, env, marked)
    finally:
        here.stop()
        there.stop()


def test_a_remote_context_lists_and_pushes_like_a_local_one(hosts: Hosts, tmp_path: Path) -> None:
    weights = os.urandom(2_500_000)  # three objects.put chunks
    model = make_model_dir(tmp_path / "churn", "churn", weights=weights,
                           extra={"sub/vocab.txt": b"a\nb\n", "empty.txt": b""})  # fmt: skip
    pushed = hosts.json("--context", "remote", "push", str(model))
    assert pushed["version"]["model"] == "churn"
    assert pushed["created"]
    assert pushed["bytes_copied"] >= 2_500_000
    # The audit trail has one entry for the object sent, not one per chunk (nor for the probe before them).
    audit = hosts.json("--context", "remote", "audit")["items"]
    sha = hashlib.sha256(weights).hexdigest()
    puts = [e for e in audit if e["op"] == "objects.put" and e["request"].get("sha256") == sha]
    assert [(e["result"], e["request"]["size"]) for e in puts] == [("ok", 2_500_000)]

    assert [m["name"] for m in hosts.json("--context", "remote", "ls")["items"]] == ["churn"]
    assert hosts.json("ls")["items"] == []  # local is the other daemon
    assert hosts.json("--context", "remote", "ps")["items"] == []

    local = hosts.json("push", str(model))
    assert local["version"]["digest"] == pushed["version"]["digest"]

    again = hosts.json("--context", "remote", "push", str(model))  # unchanged: nothing is sent again
    assert not again["created"]
    assert again["bytes_copied"] == 0
    assert again["version"]["number"] == pushed["version"]["number"]

    res = hosts.cli("--context", "ro", "push", str(model))  # a read-only context sends nothing that changes state
    assert res.returncode == 6, res.stderr
    assert "refused by --readonly" in res.stderr

    res = hosts.cli("--context", "remote", "checkout", "churn:1", str(tmp_path / "out"))
    assert res.returncode == 4, res.stderr
    assert "cannot cross SSH" in res.stderr


def test_an_unreachable_context_fails_at_once_saying_why(hosts: Hosts) -> None:
    res = hosts.cli("--context", "down", "ls", timeout=60)
    assert res.returncode == 7, res.stderr
    assert "context down" in res.stderr
    assert "Connection refused" in res.stderr
    res = hosts.cli("--context", "nowhere", "ls")
    assert res.returncode == 2
    assert "no context 'nowhere' (local, remote, marked, ro, down)" in res.stderr


def test_ctx_shows_every_context_and_which_answer(hosts: Hosts) -> None:
    res = hosts.cli("ctx", "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    rows = {row["name"]: row for row in json.loads(res.stdout)}
    assert list(rows) == ["local", "remote", "marked", "ro", "down"]
    assert rows["ro"]["readonly"]
    assert rows["ro"]["reachable"]
    assert rows["local"]["reachable"]
    assert rows["local"]["current"]
    assert rows["local"]["where"] == str(hosts.here.socket)
    assert rows["remote"]["reachable"]
    assert rows["remote"]["remote"]
    assert not rows["remote"]["current"]
    assert not rows["down"]["reachable"]
    assert "Connection refused" in rows["down"]["error"]
    human = hosts.cli("--context", "remote", "ctx", timeout=60)
    assert human.returncode == 0
    assert "* " in next(line for line in human.stdout.splitlines() if " remote " in line)


def _carrying(marker: str) -> list[str]:
    """The command lines of live processes that mention ``marker`` (ssh, the bridge)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in argv:
                found.append(f"{entry.name}: {argv}")
    return found


def test_a_killed_client_leaves_no_ssh_or_bridge_behind(hosts: Hosts) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import asyncio, sys\n"
            "from modeltui.contexts import find_context, load_contexts, open_client\n"
            "async def main():\n"
            "    client = await open_client(find_context(load_contexts(), 'marked'))\n"
            "    print('connected', flush=True)\n"
            "    await asyncio.sleep(600)\n"
            "asyncio.run(main())\n")],
        env=hosts.env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "connected"
        alive = _carrying(hosts.marked_socket)
        assert any("ssh " in p for p in alive), alive
        assert any("modeltui-bridge" in p for p in alive), alive
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    wait_for(lambda: not _carrying(hosts.marked_socket), "ssh and the bridge to end", timeout=30)



def test_a_host_that_never_answers_fails_within_the_timeout(sshd: SshServer) -> None:
    """A port that accepts and then says nothing (no SSH banner): the connect gives up after its timeout and
    ends its ssh."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        ctx = Context(name="silent", ssh=sshd.host, bridge=BRIDGE, ssh_args=(*sshd.ssh_args, "-p", str(port)))

        async def connect() -> None:
            await asyncio.wait_for(open_client(ctx, timeout=1.0), 30)  # a hang fails here, not in CI's timeout

        with pytest.raises(DaemonUnavailable, match="context silent"):
            asyncio.run(connect())
        assert not _carrying(f"-p {port} "), "ssh outlived the failed connect"
