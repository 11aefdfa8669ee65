"""A minimal HTTP GET for health checks: the daemon needs no HTTP client library for one request line."""

from __future__ import annotations

import asyncio
import contextlib


async def http_status(port: int, path: str = "/health", *, within: float = 2.0, host: str = "127.0.0.1") -> int:
    """The status code of ``GET path``, or 0 when nothing answers in time."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
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
