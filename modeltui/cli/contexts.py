"""``modeltui ctx``: the contexts of the client config, and whether each answers now.

Every context is pinged at once with a short timeout, so one unreachable host costs that timeout once, not
once per host. The exit code is non-zero only for a bad config: an unreachable host is a fact to show.
"""

from __future__ import annotations

import asyncio
import time

import click
from pydantic import BaseModel

from daemon.protocol import requests as q
from daemon.protocol.errors import ProtocolError
from daemon.protocol.paths import find_socket

from ..contexts import Context, ContextError, current_context_name, load_contexts, open_client
from .common import Globals, emit, fail, json_option, main, out
from .render import Col, FitTable

PING_TIMEOUT = 3.0


class ContextRow(BaseModel):
    name: str
    where: str
    remote: bool
    reachable: bool
    latency_ms: float | None
    error: str
    readonly: bool
    color: str | None
    current: bool


async def _probe(ctx: Context, g: Globals, timeout: float) -> tuple[float | None, str]:  # noqa: ASYNC109
    """(round trip of a ping in ms, or None; the reason when unreachable). Never starts a daemon."""
    try:
        async with asyncio.timeout(timeout + 1):
            client = await open_client(ctx, client_name="modeltui-ctx", start=False, timeout=timeout,
                                       socket=g.socket, config=g.config)  # fmt: skip
            async with client:
                started = time.monotonic()
                await client.call(q.Ping())
                return (time.monotonic() - started) * 1000, ""
    except ProtocolError as exc:
        return None, exc.message
    except TimeoutError:
        return None, f"no answer within {timeout + 1:.0f}s"


async def probe_all(contexts: list[Context], g: Globals, timeout: float) -> list[tuple[float | None, str]]:  # noqa: ASYNC109
    return list(await asyncio.gather(*(_probe(c, g, timeout) for c in contexts)))


def where(c: Context, g: Globals) -> str:
    """The socket ``local`` uses (found as every command finds it), or the context's own place."""
    return str(find_socket(g.socket, g.config)) if c.socket is None and c.ssh is None else c.where


@main.command("ctx")
@json_option
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=PING_TIMEOUT, show_default=True,
              help="seconds to wait for each context")  # fmt: skip
@click.pass_context
def ctx_list(ctx: click.Context, as_json: bool, timeout: float) -> None:
    """The contexts (daemons you can reach): where each is, whether it answers, read-only, current.

    Contexts live in the client config ($MODELTUI_CLIENT_CONFIG or ~/.config/modeltui/config.toml); pick one
    with --context NAME, $MODELTUI_CONTEXT or `current = "NAME"` there.
    """
    g: Globals = ctx.obj
    try:
        contexts = load_contexts()
        current = current_context_name(g.context)
    except ContextError as exc:
        fail(str(exc), 2)
    probes = asyncio.run(probe_all(contexts, g, timeout))
    rows = [
        ContextRow(name=c.name, where=where(c, g), remote=c.remote, reachable=ms is not None, latency_ms=ms, error=why,
                   readonly=c.readonly, color=c.color, current=c.name == current)
        for c, (ms, why) in zip(contexts, probes, strict=True)
    ]  # fmt: skip

    def human() -> None:
        cols = (Col(""), Col("name"), Col("where", shorten=16), Col("reachable", shorten=24),
                Col("readonly", drop=1))  # fmt: skip
        out.print(FitTable(cols, (
            ["*" if row.current else "", row.name, row.where,
             f"yes ({row.latency_ms:.0f} ms)" if row.latency_ms is not None else f"no: {row.error}",
             "yes" if row.readonly else ""]
            for row in rows)))  # fmt: skip

    emit([row.model_dump() for row in rows], as_json, human)
