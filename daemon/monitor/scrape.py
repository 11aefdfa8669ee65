"""Fetch ``GET /metrics`` from every target with bounded concurrency and a per-target timeout.

A target that refuses, times out, answers with a status other than 200 or serves text the Prometheus parser
rejects is recorded as down (``up`` = 0) with the reason; it never affects the other targets. Parsing keeps
only the sample names derivation needs, read by the strict fast path of ``expo.py`` for the plain exposition
the runtime renders (on the event loop, for an exposition of a runtime's size), ``prometheus_client``'s
parser in a thread for anything else (it decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from daemon.serving.auth import bearer

from .derive import KEPT, Labels
from .expo import Reader, fast_samples
from .store import ScrapeResult

log = logging.getLogger("modeltuid.monitor")

#: An exposition larger than this is refused (a runtime's is a few KiB; labels are bounded).
MAX_BODY = 8 << 20
DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT = 2.0
#: Expositions up to this size are parsed on the event loop when the fast path reads them (the runtime's: 24 KiB).
INLINE_PARSE_MAX = 128 << 10


@dataclass(frozen=True)
class Target:
    deployment: str
    host: str
    port: int | None  # None: the deployment has no running instance (recorded as down)
    instance: str | None = None
    started_at: float | None = None
    token: str | None = None
    """The deployment's admin token (sent on every scrape: ``/metrics`` may be closed)."""


class ScrapeError(Exception):
    pass


async def fetch(host: str, port: int, path: str = "/metrics", token: str | None = None) -> str:
    """One HTTP/1.1 GET with ``Connection: close`` (and the bearer ``token``); the body as text (200 only)."""
    reader, writer = await asyncio.open_connection(host, port)
    auth = "".join(f"{name}: {value}\r\n" for name, value in bearer(token).items())
    try:
        line = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Accept: text/plain\r\nConnection: close\r\n\r\n"
        writer.write(line.encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ScrapeError(f"not an HTTP response: {status_line[:60]!r}")
        if parts[1] != "200":
            raise ScrapeError(f"HTTP {parts[1]}")
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise ScrapeError("chunked responses are not supported")
        length = headers.get("content-length")
        if length is not None:
            n = int(length)
            if n > MAX_BODY:
                raise ScrapeError(f"exposition too large ({n} bytes)")
            body = await reader.readexactly(n)
        else:
            body = await reader.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                raise ScrapeError("exposition too large")
        return body.decode("utf-8")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def parse(text: str) -> list[tuple[str, Labels, float]]:
    """The kept samples of an exposition; raises ValueError on text that is not the Prometheus format."""
    fast = fast_samples(text, KEPT)
    if fast is not None:
        return [s for s in fast if math.isfinite(s[2])]
    return parse_reference(text)


def parse_reference(text: str) -> list[tuple[str, Labels, float]]:
    """:func:`parse` through ``prometheus_client`` only (the reference the fast path is tested against)."""
    out: list[tuple[str, Labels, float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in KEPT and math.isfinite(s.value):
                out.append((s.name, tuple(sorted(s.labels.items())), float(s.value)))
    return out


async def _parse_async(text: str, target: str, reader: Reader | None) -> list[tuple[str, Labels, float]]:
    """A small exposition in the strict form is read on the event loop (well under a millisecond: a thread
    hand-off and the contention for the GIL cost more; ``reader`` remembers each target's last exposition);
    anything else in a thread."""
    if len(text) > INLINE_PARSE_MAX:
        return await asyncio.to_thread(parse, text)
    fast = fast_samples(text, KEPT) if reader is None else reader.samples(target, text)
    if fast is None:
        return await asyncio.to_thread(parse_reference, text)
    return [s for s in fast if math.isfinite(s[2])]


async def scrape_one(target: Target, timeout_s: float, reader: Reader | None = None) -> ScrapeResult:
    started = time.monotonic()

    def result(up: bool, error: str = "", samples: list[tuple[str, Labels, float]] | None = None) -> ScrapeResult:
        return ScrapeResult(
            deployment=target.deployment,
            instance=target.instance,
            started_at=target.started_at,
            up=up,
            error=error,
            duration=time.monotonic() - started,
            samples=samples or [],
        )

    if target.port is None:
        return result(False, "no running instance")
    try:
        async with asyncio.timeout(timeout_s):
            text = await fetch(target.host, target.port, token=target.token)
            samples = await _parse_async(text, target.deployment, reader)
    except TimeoutError:
        return result(False, f"no answer within {timeout_s:g} s")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, UnicodeDecodeError) as exc:
        return result(False, f"{type(exc).__name__}: {exc}"[:300])
    except ScrapeError as exc:
        return result(False, str(exc))
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # the parser's ways of failing
        return result(False, f"unparseable metrics: {exc}"[:300])
    return result(True, samples=samples)


async def scrape_all(
    targets: Sequence[Target],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout_s: float = DEFAULT_TIMEOUT,
    reader: Reader | None = None,
) -> list[ScrapeResult]:
    """Scrape every target, at most ``concurrency`` at a time; one result per target, in order."""
    sem = asyncio.Semaphore(concurrency)

    async def one(t: Target) -> ScrapeResult:
        async with sem:
            try:
                return await scrape_one(t, timeout_s, reader)
            except Exception as exc:  # never let one target break the cycle
                log.exception("scraping %s failed", t.deployment)
                return ScrapeResult(t.deployment, t.instance, t.started_at, False, f"internal error: {exc}"[:300])

    return list(await asyncio.gather(*(one(t) for t in targets)))
