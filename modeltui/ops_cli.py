"""Operations commands of the CLI: ``audit [--since] [--user] [--limit] [--json]``, the daemon's record of
every change asked of it and every refused request."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click
from rich.markup import escape
from rich.table import Table

from daemon.protocol import requests as q
from daemon.protocol import results as r

from . import render
from .cli import emit, json_option, main, out, run

DURATION = re.compile(r"^(\d+)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``2h``, ``7d`` (ago) or an ISO 8601 time (UTC when it names no zone)."""
    now = now or datetime.now(UTC)
    if m := DURATION.match(text.strip()):
        return now - timedelta(seconds=int(m.group(1)) * UNIT_SECONDS[m.group(2)])
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: use a duration (30m, 2h, 7d) or an ISO time (2026-11-27T10:00)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def audit_table(entries: list[r.AuditEntry]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("WHEN (UTC)", "USER", "OP", "TARGET", "RESULT", "MESSAGE"):
        t.add_column(col, overflow="fold")
    for e in entries:
        style = "" if e.result == "ok" else "red"
        result = f"[{style}]{escape(e.result)}[/]" if style else escape(e.result)
        t.add_row(render.when(e.at), escape(f"{e.user} ({e.uid})"), escape(e.op), escape(e.target), result,
                  escape(e.message[:80]))  # fmt: skip
    return t


@main.command("audit")
@click.option("--since", "since_text", metavar="WHEN", help="only entries since then: 30m, 2h, 7d or an ISO time")
@click.option("--user", help="only this user's entries")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@json_option
@click.pass_context
def audit(ctx: click.Context, since_text: str | None, user: str | None, limit: int, as_json: bool) -> None:
    """Changes asked of the daemon and refused requests, newest first: who (uid), what, when, the result."""
    since = parse_since(since_text) if since_text else None
    req = q.AuditRequest(since=since, user=user, limit=limit)
    result = run(ctx, lambda c: c.call(req, r.AuditList))

    def show() -> None:
        if not result.items:
            out.print(render.plain("no audit entries" + (" in that window" if since else "")))
            return
        out.print(audit_table(result.items))

    emit(result, as_json, show)
