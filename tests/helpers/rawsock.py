"""A deliberately dumb blocking client for sending hand-made (and malformed) frames to a real daemon."""

from __future__ import annotations

import array
import json
import socket
from pathlib import Path
from typing import Any


class RawClient:
    def __init__(self, path: Path, *, hello: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.buf = b""
        if hello:
            self.send({"type": "hello", "protocol": 1, "client": "raw-test"})
            welcome = self.recv()
            assert welcome["type"] == "welcome", welcome

    def send_bytes(self, data: bytes, fds: list[int] | None = None) -> None:
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            self.sock.sendmsg([data[:1]], anc)
            data = data[1:]
        self.sock.sendall(data)

    def send(self, obj: dict[str, Any], fds: list[int] | None = None) -> None:
        self.send_bytes(json.dumps(obj).encode() + b"\n", fds)

    def recv(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("daemon closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        out: dict[str, Any] = json.loads(line)
        return out

    def recv_reply(self) -> dict[str, Any]:
        """The next response or error, skipping pushed events."""
        while True:
            frame = self.recv()
            if frame["type"] in ("response", "error"):
                return frame

    def request(self, body: dict[str, Any], req_id: int = 1, fds: list[int] | None = None) -> dict[str, Any]:
        self.send({"type": "request", "id": req_id, "request": body}, fds)
        return self.recv_reply()

    def close(self) -> None:
        self.sock.close()
