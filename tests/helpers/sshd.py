"""A real OpenSSH ``sshd`` on 127.0.0.1, with host and client keys made for the test (Debian's openssh-server).

The session-scoped ``sshd`` fixture (tests/conftest.py) starts one; tests reach this machine through it as
the current user, as an operator reaches a remote host::

    def test_x(sshd: SshServer) -> None:
        subprocess.run(["ssh", *sshd.ssh_args, sshd.host, "true"])    # ssh -F CONFIG modeltui-test true
        Context(name="remote", ssh=sshd.host, ssh_args=sshd.ssh_args, bridge=BRIDGE, remote_socket=...)

``sshd.ssh_args`` is ``("-F", CONFIG)``: an ssh_config whose ``Host modeltui-test`` names the port, the
client key, a private known_hosts file (``accept-new``) and ``BatchMode yes``, so nothing of the user's own
SSH setup is read or changed. The remote command runs in a login environment (HOME, no MODELTUI_*): give
the bridge's absolute path (:data:`BRIDGE`) and the remote socket explicitly.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.waiting import wait_for

HOST = "modeltui-test"
#: The bridge of this venv, as ssh runs it on "the remote host" (this machine).
BRIDGE = str(Path(sys.executable).parent / "modeltui-bridge")


def sshd_binary() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    return free_port()


@dataclass
class SshServer:
    """A running sshd; ``ssh *ssh_args host CMD`` runs CMD on this machine as the current user."""

    base: Path
    port: int
    config: Path
    proc: subprocess.Popen[bytes]
    host: str = HOST

    @property
    def ssh_args(self) -> tuple[str, ...]:
        return ("-F", str(self.config))

    def log(self) -> str:
        return (self.base / "sshd.log").read_text(errors="replace") if (self.base / "sshd.log").exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "modeltui-test", "-f", str(path)],
                   check=True, capture_output=True)  # fmt: skip


def start_sshd(base: Path, sshd: str) -> SshServer:
    """Start sshd on a free loopback port with fresh keys in ``base``; returns once it accepts connections."""
    base.mkdir(parents=True, exist_ok=True)
    _keygen(base / "host_key")
    _keygen(base / "client_key")
    shutil.copy(base / "client_key.pub", base / "authorized_keys")
    # Privilege separation needs this directory (root only; a non-root sshd serves only its own user).
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    (base / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {base / 'host_key'}\nPidFile {base / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPubkeyAuthentication yes\n"
        "PrintMotd no\nLogLevel VERBOSE\nMaxStartups 100:30:200\nMaxSessions 100\n"
    )
    (base / "ssh_config").write_text(
        f"Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {base / 'client_key'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {base / 'known_hosts'}\n"
        "  StrictHostKeyChecking accept-new\n  BatchMode yes\n  LogLevel ERROR\n"
    )
    os.chmod(base / "ssh_config", 0o600)  # ssh refuses a config others can write
    proc = subprocess.Popen([sshd, "-D", "-f", str(base / "sshd_config"), "-E", str(base / "sshd.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    server = SshServer(base, port, base / "ssh_config", proc)

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}:\n{server.log()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    wait_for(listening, "sshd to listen", timeout=30)
    return server
