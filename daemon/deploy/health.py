"""A minimal HTTP client for the daemon's own calls to its runtimes' admin ports (health checks, token
rotation): the daemon needs no HTTP client library for one request line."""

from __future__ import annotations

import asyncio
import contextlib

from daemon.serving.auth import bearer


async def http_status(
    port: int,
    path: str = "/health",
    *,
    within: float = 2.0,
    host: str = "127.0.0.1",
    token: str | None = None,
    method: str = "GET",
    body: bytes = b"",
) -> int:
    """The status code of ``METHOD path`` (with the admin ``token`` when given), or 0 when nothing answers
    in time."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            auth = "".join(f"{name}: {value}\r\n" for name, value in bearer(token).items())
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n"
            if body or method != "GET":
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"\r\n" + body)
            await writer.drain()
            line = await reader.readline()
    except (OSError, TimeoutError):
        return 0
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
