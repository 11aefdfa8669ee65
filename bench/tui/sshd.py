"""A private ``sshd`` on 127.0.0.1 (a free port, a host key and a client key made here, only that key let
in) and the ``ssh -tt`` command line that reaches it: what the benchmark's "over SSH" figures go through.
Used until P1's tests/helpers/sshd.py exists (``start_sshd`` prefers it then)."""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Sshd:
    port: int
    key: Path
    proc: subprocess.Popen[bytes]

    def ssh_argv(self, *remote: str, tty: bool = True) -> list[str]:
        """``ssh -tt`` to this sshd running ``remote`` (one shell command line on the other side)."""
        return [
            "ssh", *(["-tt"] if tty else []), "-p", str(self.port), "-i", str(self.key), "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", f"{getpass.getuser()}@127.0.0.1", *remote,
        ]  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sshd(work: Path) -> Sshd:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        raise RuntimeError("no sshd: apt-get install openssh-server")
    work.mkdir(parents=True, exist_ok=True)
    host_key, key = work / "host_ed25519", work / "id_ed25519"
    for path in (host_key, key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    (work / "authorized_keys").write_text((work / "id_ed25519.pub").read_text())
    port = free_port()
    config = work / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {work}/authorized_keys\n"
        f"PidFile {work}/sshd.pid\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nPrintMotd no\nPrintLastLog no\nAcceptEnv *\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory sshd insists on
    log = open(work / "sshd.log", "wb")  # noqa: SIM115 - closed at once; the child keeps its copy
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    server = Sshd(port, key, proc)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        probe = subprocess.run(server.ssh_argv("true", tty=False), capture_output=True, timeout=15, check=False)
        if probe.returncode == 0:
            return server
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"sshd did not start: {(work / 'sshd.log').read_text(errors='replace')}")
