"""``modeltui-bridge``: run by ssh on a remote host, it relays a client's frames to that host's daemon.

stdin → the daemon's socket, the socket → stdout, until either side closes. The daemon sees the bridge's own
user (SO_PEERCRED), so roles work as for a local user of that host. It never starts a daemon unless
``--start``. Exit codes: 0 when either side closed, 69 (EX_UNAVAILABLE) when no daemon answers (the reason on
stderr, where ssh passes it to the client), 2 on a usage error.

Import-light on purpose: it starts on every connection, so it uses the standard library only (the socket
discovery is loaded from ``daemon/protocol/paths.py`` alone, without the package's pydantic models).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

EX_UNAVAILABLE = 69
CHUNK = 256 * 1024


def _paths() -> ModuleType:
    """``daemon.protocol.paths`` without running ``daemon/protocol/__init__.py`` (which loads pydantic,
    a quarter of a second on every connection): the module needs the standard library only."""
    spec = importlib.util.find_spec("daemon.protocol")  # imports ``daemon`` (its version only), not the protocol
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("daemon.protocol is not installed")
    file = Path(next(iter(spec.submodule_search_locations))) / "paths.py"
    paths_spec = importlib.util.spec_from_file_location("_modeltui_bridge_paths", file)
    if paths_spec is None or paths_spec.loader is None:
        raise ImportError(f"cannot load {file}")
    module = importlib.util.module_from_spec(paths_spec)
    paths_spec.loader.exec_module(module)
    return module


def find_socket(flag: str | None, config: str | None) -> Path:
    """The same discovery as ``modeltui``: flag > $MODELTUI_SOCKET > the daemon config > the default."""
    path: Path = _paths().find_socket(flag, config)
    return path


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def _start_and_connect(path: Path, config: str | None, timeout: float = 15.0) -> socket.socket:
    """Start ``modeltuid`` for this user (as ``modeltui`` does) and wait for its socket."""
    env = dict(os.environ, MODELTUI_SOCKET=str(path))
    cmd = [sys.executable, "-m", "daemon", "run", "--detach-log", *(["--config", config] if config else [])]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _connect(path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _pump_in(stdin: int, sock: socket.socket) -> None:
    """stdin → socket; at the client's EOF the whole bridge ends (nobody is left to read the answers)."""
    try:
        while data := os.read(stdin, CHUNK):
            sock.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes the other direction's recv with EOF


def relay(sock: socket.socket, stdin: int = 0, stdout: int = 1) -> None:
    """Copy both ways until either side closes."""
    threading.Thread(target=_pump_in, args=(stdin, sock), daemon=True).start()
    try:
        while data := sock.recv(CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(stdout, view) :]
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="modeltui-bridge",
        description="Relay stdin/stdout to this host's modeltuid socket (run by `ssh HOST modeltui-bridge`).",
    )
    parser.add_argument("--socket", help="daemon socket (default: $MODELTUI_SOCKET, the config, or the default)")
    parser.add_argument("--config", help="daemon config file used to find the socket")
    parser.add_argument("--start", action="store_true", help="start a daemon for this user when none answers")
    args = parser.parse_args(argv)
    path = find_socket(args.socket, args.config)
    try:
        sock = _connect(path)
    except OSError as exc:
        if not args.start:
            print(f"modeltui-bridge: no daemon answers on {path}: {exc.strerror or exc}", file=sys.stderr)
            return EX_UNAVAILABLE
        try:
            sock = _start_and_connect(path, args.config)
        except OSError as exc2:
            print(f"modeltui-bridge: started a daemon but none answers on {path}: {exc2.strerror or exc2}",
                  file=sys.stderr)  # fmt: skip
            return EX_UNAVAILABLE
    relay(sock)
    sock.close()
    return 0
