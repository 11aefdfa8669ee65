"""``modeltui daemon status|stop``. When no daemon answers, status says so, and when and why the last one
stopped.

Status never starts a daemon (a start would hide the crash the user is asking about). What is known comes
from the files beside the socket (:mod:`daemon.protocol.lifecycle`): the daemon's record of its last run and
the output of the last embedded start.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from daemon.protocol import lifecycle
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import EXIT_CODES, ErrorCode, ProtocolError
from daemon.protocol.paths import find_socket

from ..client import DaemonUnavailable, connect_or_start
from ..format import uptime, when
from . import render
from .common import Globals, emit, err, fail, json_option, main, out


def _log_written(log_file: str) -> datetime | None:
    """When the daemon's log was last written: the best clue to when a killed daemon died."""
    try:
        return datetime.fromtimestamp(os.stat(log_file).st_mtime, UTC) if log_file else None
    except OSError:
        return None


def last_run_lines(socket: Path, now: datetime | None = None) -> list[str]:
    """What is known about the daemon that last ran on ``socket``, one fact a line ([] when nothing is)."""
    now = now or datetime.now(UTC)
    rec = lifecycle.read_record(socket)
    start_log = lifecycle.start_log_path(socket)
    start_line = lifecycle.last_line(start_log)
    lines: list[str] = []
    if rec is not None:
        started = f"pid {rec.pid}, started {when(rec.started_at)} UTC"
        if rec.state == "stopped" and rec.stopped_at is not None:
            lines.append(f"last stopped cleanly {when(rec.stopped_at)} UTC ({uptime(rec.stopped_at, now)} ago), "
                         f"by {rec.reason or 'a stop request'} ({started})")
        elif rec.state == "crashed" and rec.stopped_at is not None:
            lines.append(f"last crashed {when(rec.stopped_at)} UTC ({uptime(rec.stopped_at, now)} ago): "
                         f"{rec.reason} ({started})")
        elif lifecycle.pid_alive(rec.pid):
            lines.append(f"process {rec.pid} still runs but does not answer on the socket ({started})")
        else:
            written = _log_written(rec.log_file)
            clue = f"; its log was last written {when(written)} UTC" if written is not None else ""
            lines.append(f"last run ended without a clean stop: killed (SIGKILL, out of memory, or the host "
                         f"went down) ({started}{clue})")
        if rec.log_file:
            lines.append(f"its log: {rec.log_file}")
    detail = rec.reason.partition(": ")[2] if rec is not None and rec.state == "crashed" else ""
    told = bool(detail) and detail in start_line  # the start log's line is the crash already said
    if start_line and not told:
        lines.append(f"last embedded start wrote: {start_line} (all of it: {start_log})")
    return lines


def not_running_document(socket: Path, message: str) -> dict[str, Any]:
    """The ``--json`` answer when no daemon answers."""
    rec = lifecycle.read_record(socket)
    start_log = lifecycle.start_log_path(socket)
    return {
        "running": False,
        "socket": str(socket),
        "message": message,
        "last_run": rec.model_dump(mode="json") if rec is not None else None,
        "start_log": str(start_log) if start_log.exists() else None,
        "start_log_last_line": lifecycle.last_line(start_log) or None,
    }


@main.group()
def daemon() -> None:
    """The daemon this client talks to."""


@daemon.command("status")
@json_option
@click.pass_context
def daemon_status(ctx: click.Context, as_json: bool) -> None:
    """Is a daemon answering, and what does it hold. Never starts one: when none answers, say so (and when
    and why the last one stopped, when known) and exit 7."""
    g: Globals = ctx.obj

    async def ask() -> r.DaemonStatus:
        client = await connect_or_start(g.socket, config=g.config, start=False, client_name="modeltui-cli")
        async with client:
            return await client.call(q.DaemonStatusRequest())

    try:
        result = asyncio.run(ask())
    except DaemonUnavailable as exc:
        socket = find_socket(g.socket, g.config)
        if as_json:
            click.echo(json.dumps(not_running_document(socket, exc.message), indent=2))
        else:
            # "no daemon answers" when there is none; a hung daemon's own words ("does not answer: …") otherwise
            out.print(render.plain(f"no daemon is running on {socket}" if exc.startable else exc.message))
            for line in last_run_lines(socket):
                out.print(render.plain(line))
        sys.exit(EXIT_CODES[ErrorCode.UNAVAILABLE])
    except ProtocolError as exc:
        fail(exc.message, EXIT_CODES.get(exc.code, 1))
    emit(result, as_json, lambda: render.print_status(out, result))


@daemon.command("stop")
@click.pass_context
def daemon_stop(ctx: click.Context) -> None:
    """Ask the daemon to shut down cleanly (it finishes the requests in flight first)."""
    g: Globals = ctx.obj

    async def stop() -> bool:
        try:
            client = await connect_or_start(g.socket, config=g.config, start=False, client_name="modeltui-cli")
        except DaemonUnavailable:
            return False
        async with client:
            await client.call(q.DaemonStop())
            await asyncio.wait_for(client.closed.wait(), 60)
        return True

    try:
        stopped = asyncio.run(stop())
    except ProtocolError as exc:
        fail(exc.message, EXIT_CODES.get(exc.code, 1))
    except TimeoutError:
        fail("the daemon did not stop within 60 s; see its log", 1)
    err.print("daemon stopped" if stopped else "no daemon was running")
