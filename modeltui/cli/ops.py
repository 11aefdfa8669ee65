"""Operations commands of the CLI: ``audit [--since] [--user] [--limit] [--json]``, the daemon's record of
every change asked of it and every refused request."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from daemon.protocol import requests as q
from daemon.protocol import results as r

from .. import format as fmt
from . import render
from .common import emit, json_option, main, out, run

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


AUDIT_COLS = (render.Col("WHEN (UTC)"), render.Col("USER"), render.Col("OP"), render.Col("TARGET"),
              render.Col("RESULT"), render.Col("MESSAGE", drop=1, shorten=16))


def audit_table(entries: list[r.AuditEntry]) -> render.FitTable:
    rows = []
    for e in entries:
        result = render.plain(e.result)
        result.stylize("" if e.result == "ok" else "red")
        at = fmt.when(e.at)
        user = f"{e.user} ({e.uid})"
        rows.append((render.Cell(render.plain(at), render.plain(at[5:])), render.Cell(render.plain(user),
                     render.plain(e.user)), e.op, e.target, result, render.one_line(e.message)))
    return render.FitTable(AUDIT_COLS, rows)


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
    result = run(ctx, lambda c: c.call(req))

    def show() -> None:
        if not result.items:
            out.print(render.plain("no audit entries" + (" in that window" if since else "")))
            return
        out.print(audit_table(result.items))

    emit(result, as_json, show)
