"""Fallback load generator for bench/serving, used only when ``wrk`` is not installed.

    python bench/serving/loadgen.py --port P --connections 16 --duration 10 --bodies FILE.json [--path /invocations]

N keep-alive HTTP/1.1 connections to 127.0.0.1, each sending ``POST PATH`` back to back (closed
loop, like wrk), cycling through the JSON bodies in FILE (a list of strings). Runs in its own process so it
does not share a GIL with anything it measures. Prints one JSON line in the same shape as run.py's wrk
summary: requests, duration_s, latency percentiles in ms, non-2xx and socket errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path


async def worker(port: int, reqs: list[bytes], offset: int, stop: float, lat: list[float], err: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop:
            req = reqs[i % len(reqs)]
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            length = 0
            for line in lines[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if not 200 <= status < 300:
                err["status"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        err["socket"] += 1
    finally:
        writer.close()


async def run(port: int, conns: int, duration: float, bodies: list[str], path: str) -> dict[str, object]:
    reqs = [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b.encode())}\r\n\r\n{b}"
        ).encode()
        for b in bodies
    ]
    lat: list[float] = []
    err = {"status": 0, "socket": 0}
    t0 = time.perf_counter()
    stop = t0 + duration
    await asyncio.gather(*(worker(port, reqs, k * 7, stop, lat, err) for k in range(conns)))
    took = time.perf_counter() - t0
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, round(p * (len(lat) - 1)))] * 1000.0 if lat else float("nan")

    return {
        "requests": len(lat),
        "duration_s": took,
        "p50_ms": q(0.50),
        "p99_ms": q(0.99),
        "max_ms": lat[-1] * 1000.0 if lat else float("nan"),
        "non2xx": err["status"],
        "socket_errors": err["socket"],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--bodies", type=Path, required=True)
    ap.add_argument("--path", default="/invocations")
    args = ap.parse_args()
    bodies = json.loads(args.bodies.read_text())
    print(json.dumps(asyncio.run(run(args.port, args.connections, args.duration, bodies, args.path))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
