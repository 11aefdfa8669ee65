"""Real ZooKeeper servers for tests: one standalone server or a three-server ensemble on loopback ports.

Uses Debian's ``zookeeper`` package (ZooKeeper 3.8, jars in /usr/share/java). Each server gets its own
directory under ``base``::

    base/zk1/zoo.cfg            the server's configuration
    base/zk1/log4j.properties   logging goes to base/zk1/zookeeper.log (stdout stays quiet)
    base/zk1/zookeeper.out      the JVM's own stdout/stderr (normally empty)
    base/zk1/data/              dataDir (myid, version-2/ snapshots and transaction logs)

Every server runs in its own process group and is registered for cleanup: ``ZkEnsemble.close()`` (the
fixtures call it), an ``atexit`` hook and ``PR_SET_PDEATHSIG`` (the JVM gets SIGKILL when the thread that
started it dies, so servers never outlive a killed pytest) make sure no JVM is left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

JAVA_DIR = Path("/usr/share/java")
#: ``zookeeper.jar`` names its dependencies (slf4j-api, netty, jute, ...) in its manifest Class-Path but no
#: slf4j binding: without one the server logs nothing. Putting all of /usr/share/java on the class path instead
#: brings several competing slf4j bindings (nop, simple, jdk14, log4j12, ...) and log4j-over-slf4j next to
#: log4j-1.2, so the binding is chosen by directory order. Name exactly one binding: slf4j-log4j12 + log4j 1.2.
JARS = ("zookeeper.jar", "slf4j-log4j12.jar", "log4j-1.2.jar")
#: TLS (``secureClientPort``) needs Netty's server connection factory: the codec and resolver jars are not in
#: zookeeper.jar's manifest Class-Path.
TLS_JARS = ("netty-codec.jar", "netty-resolver.jar")
MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
JVM_FLAGS = (
    "-Xms32m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",  # faster JVM start-up; a test server needs no C2
    "-Djava.net.preferIPv4Stack=true",
    "-Dzookeeper.jmx.log4j.disable=true",
    "-Dzookeeper.admin.enableServer=false",
    # Quorum connections to a dead peer time out after 5 s by default, which slows leader election.
    "-Dzookeeper.cnxTimeout=1000",
)

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File={log}
log4j.appender.FILE.Append=true
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} %-5p [myid:{myid}] [%t:%C{{1}}@%L] - %m%n
"""

_PR_SET_PDEATHSIG = 1
_live: set[ZkServer] = set()


def java_missing() -> str | None:
    """Why a ZooKeeper server cannot run here, or None when java and the jars are present."""
    if shutil.which("java") is None:
        return "java is not installed (default-jre-headless)"
    missing = [jar for jar in JARS if not (JAVA_DIR / jar).exists()]
    if missing:
        return f"ZooKeeper jars missing from {JAVA_DIR}: {', '.join(missing)} (Debian package zookeeper)"
    return None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        server.kill()


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that are free right now (all held open together, so no duplicates)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def four_letter(port: int, cmd: str, timeout: float = 2.0) -> str:
    """Send a four-letter command (``ruok``, ``srvr``, ``mntr``, ...) and return the answer ('' on failure)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(cmd.encode())
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


class ZkServer:
    """One ZooKeeper server process (standalone or one member of an ensemble)."""

    def __init__(self, myid: int, directory: Path, client_port: int, config: str, jars: tuple[str, ...] = JARS) -> None:
        self.myid = myid
        self.jars = jars
        self.dir = directory
        self.data_dir = directory / "data"
        self.log_file = directory / "zookeeper.log"
        self.out_file = directory / "zookeeper.out"
        self.cfg_file = directory / "zoo.cfg"
        self._client_port = client_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "myid").write_text(f"{myid}\n")
        self.cfg_file.write_text(config)
        (directory / "log4j.properties").write_text(LOG4J_PROPERTIES.format(log=self.log_file, myid=myid))

    def __repr__(self) -> str:
        return f"ZkServer(myid={self.myid}, {self.address}, running={self.running})"

    @property
    def client_port(self) -> int:
        return self._client_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc else None

    def start(self) -> None:
        """Start the JVM (returns at once; see ``wait_serving``). Starting a running server is a no-op."""
        if self.running:
            return
        classpath = ":".join([str(self.dir), *(str(JAVA_DIR / jar) for jar in self.jars)])
        argv = [
            "java",
            *JVM_FLAGS,
            f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
            f"-Dzookeeper.log.dir={self.dir}",
            "-cp",
            classpath,
            MAIN,
            str(self.cfg_file),
        ]
        with open(self.out_file, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # own process group: kill() takes the whole group
                preexec_fn=_die_with_parent,
            )
        _live.add(self)

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (SIGKILL if it does not exit within ``timeout``)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait()
        _live.discard(self)

    def kill(self) -> None:
        """SIGKILL the process group and reap it (a crash: no shutdown hooks run)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait()
        _live.discard(self)

    def four_letter(self, cmd: str, timeout: float = 2.0) -> str:
        return four_letter(self._client_port, cmd, timeout)

    def mode(self) -> str | None:
        """``leader``, ``follower`` or ``standalone`` from ``srvr``; None when down or not serving."""
        if not self.running:
            return None
        for line in self.four_letter("srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None  # "This ZooKeeper instance is not currently serving requests" while out of quorum

    def is_serving(self) -> bool:
        return self.mode() is not None

    def wait_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self!r} exited with {self.proc.returncode}\n{self.log_tail()}")
            if self.is_serving():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self!r} not serving after {timeout} s\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.out_file, self.log_file):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts)


class ZkEnsemble:
    """``size`` ZooKeeper servers (1: standalone; 3: a quorum ensemble) on free loopback ports.

    Servers are addressed by index ``i`` (0-based; the server's myid is ``i + 1``). Nothing runs until
    ``start()``. Use as a context manager or call ``close()``: it kills every server.
    """

    def __init__(
        self,
        base: Path,
        size: int = 1,
        tick_ms: int = 200,
        init_limit: int = 20,
        sync_limit: int = 10,
        max_session_timeout_ms: int = 60_000,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls``: (certificate, key) PEM files; each server then also serves TLS on a ``secureClientPort``
        (``secure_connect_string()``) with that pair, without asking clients for certificates."""
        if size < 1:
            raise ValueError("size must be at least 1")
        self.base = base
        self.size = size
        ports = free_ports(4 * size)
        client_ports, peer_ports, election_ports = ports[:size], ports[size : 2 * size], ports[2 * size : 3 * size]
        self.secure_ports = ports[3 * size :] if tls else []
        secure = ""
        if tls:
            base.mkdir(parents=True, exist_ok=True)
            pem = base / "zk-server.pem"  # ZooKeeper's PEM key store: the key and the certificate in one file
            pem.write_text(tls[1].read_text() + tls[0].read_text())
            pem.chmod(0o600)
            secure = (
                "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n"
                f"ssl.keyStore.location={pem}\nssl.keyStore.type=PEM\n"
                f"ssl.trustStore.location={tls[0]}\nssl.trustStore.type=PEM\nssl.clientAuth=none\n"
            )
        # No server.N lines for a single server: QuorumPeerMain then runs it in standalone mode.
        members = "".join(f"server.{i + 1}=127.0.0.1:{peer_ports[i]}:{election_ports[i]}\n" for i in range(size))
        if size == 1:
            members = ""
        self.servers: list[ZkServer] = []
        for i in range(size):
            directory = base / f"zk{i + 1}"
            directory.mkdir(parents=True, exist_ok=True)
            config = (
                f"tickTime={tick_ms}\n"
                f"initLimit={init_limit}\n"
                f"syncLimit={sync_limit}\n"
                f"dataDir={directory / 'data'}\n"
                f"clientPort={client_ports[i]}\n"
                "clientPortAddress=127.0.0.1\n"
                "admin.enableServer=false\n"
                "4lw.commands.whitelist=*\n"
                f"maxSessionTimeout={max_session_timeout_ms}\n"
                # Durability against process kills needs no fsync (the page cache survives); tests run faster.
                "forceSync=no\n"
                "autopurge.purgeInterval=0\n" + members
            )
            if tls:
                config += f"secureClientPort={self.secure_ports[i]}\nsecureClientPortAddress=127.0.0.1\n" + secure
            jars = JARS + TLS_JARS if tls else JARS
            self.servers.append(ZkServer(i + 1, directory, client_ports[i], config, jars))

    def __enter__(self) -> ZkEnsemble:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __getitem__(self, i: int) -> ZkServer:
        return self.servers[i]

    def __len__(self) -> int:
        return self.size

    def connect_string(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,...`` for every member (running or not)."""
        return ",".join(s.address for s in self.servers)

    def secure_connect_string(self) -> str:
        """The TLS ports (``tls`` given), in the form of :meth:`connect_string`."""
        return ",".join(f"127.0.0.1:{port}" for port in self.secure_ports)

    def start(self, i: int | None = None, *, timeout_s: float = 30.0, wait: bool = True) -> None:
        """Start every server (``i`` None) or server ``i``; with ``wait``, until each one serves clients.

        A single restarted member serves only once it has (re)joined a quorum: with two of three down,
        pass ``wait=False`` or start the others too.
        """
        targets = self.servers if i is None else [self.servers[i]]
        for server in targets:
            server.start()
        if wait:
            deadline = time.monotonic() + timeout_s
            for server in targets:
                server.wait_serving(max(0.1, deadline - time.monotonic()))

    def start_all(self, timeout_s: float = 30.0) -> None:
        self.start(timeout_s=timeout_s)

    def stop(self, i: int | None = None, timeout_s: float = 15.0) -> None:
        """SIGTERM every server (``i`` None) or server ``i`` and wait for it to exit."""
        for server in self.servers if i is None else [self.servers[i]]:
            server.stop(timeout_s)

    def stop_all(self, timeout_s: float = 15.0) -> None:
        self.stop(timeout_s=timeout_s)

    def kill(self, i: int) -> None:
        """SIGKILL server ``i``."""
        self.servers[i].kill()

    def close(self) -> None:
        """Kill every server (teardown: graceful shutdown buys nothing here)."""
        for server in self.servers:
            server.kill()

    def leader(self) -> ZkServer | None:
        """The running server whose ``srvr`` says ``Mode: leader`` (``standalone`` for a one-server ensemble)."""
        wanted = "standalone" if self.size == 1 else "leader"
        for server in self.servers:
            if server.mode() == wanted:
                return server
        return None

    def wait_for_leader(self, timeout_s: float = 30.0, *, other_than: ZkServer | None = None) -> ZkServer:
        """Wait until a leader (other than ``other_than``) serves; return it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not other_than:
                return leader
            time.sleep(0.05)
        tails = "\n".join(s.log_tail(15) for s in self.servers)
        raise TimeoutError(f"no leader after {timeout_s} s\n{tails}")
