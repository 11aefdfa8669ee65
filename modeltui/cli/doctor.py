"""``modeltui doctor [--json]``: what is wrong, and how to fix it.

The client checks the socket (where it is, whether this user may use it, whether a daemon answers) and the
caller's role; then it asks the daemon for its own checks (``daemon/doctor.py``: database integrity, disk,
directories, ZooKeeper, the Docker engine, the registry, the exporter). It never starts an embedded daemon:
a diagnosis should not change what it diagnoses. Exit status 1 when any check fails.
"""

from __future__ import annotations

import asyncio
import getpass
import grp
import os
import stat
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ProtocolError
from daemon.protocol.paths import find_socket

from ..client import connect
from ..format import printable
from .common import Globals, emit, json_option, main, out

MARK = {"ok": "[green]✓ ok[/]", "warn": "[yellow]! warn[/]", "fail": "[bold red]✗ fail[/]"}
START = "start it: `modeltui` starts an embedded daemon for you; a system service: systemctl start modeltuid"


def _check(name: str, status: str, detail: str, fix: str = "") -> r.DoctorCheck:
    return r.DoctorCheck.model_validate({"name": name, "status": status, "detail": detail, "fix": fix})


def socket_checks(path: Path) -> list[r.DoctorCheck]:
    """What the client can tell about the socket before connecting (an empty list: go on and connect)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return [_check("socket", "fail", f"{path}: no socket: no daemon is running there", START)]
    except OSError as exc:
        fix = "ask an admin to add you to the daemon's group (then log in again)"
        return [_check("socket", "fail", f"{path}: {exc.strerror}", fix)]
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a socket"
        return [_check("socket", "fail", f"{path} is {kind}", f"remove {path}, then {START}")]
    if not os.access(path, os.R_OK | os.W_OK):
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        detail = f"{path}: mode {stat.S_IMODE(st.st_mode):04o}, group {group}: {getpass.getuser()} may not use it"
        return [_check("socket", "fail", detail, f"ask an admin to add you to group {group} (then log in again)")]
    return []


async def diagnose(path: Path) -> list[r.DoctorCheck]:
    found = socket_checks(path)
    if found:
        return found
    try:
        client = await connect(path, client_name="modeltui-doctor")
    except ProtocolError as exc:
        fix = f"the socket is stale: {START}" if "answers" in exc.message else "see the daemon's log"
        return [_check("socket", "fail", exc.message, fix)]
    async with client:
        w = client.welcome
        checks = [_check("socket", "ok", f"{path}: modeltuid {w.daemon_version} answers")]
        role = w.role
        if role is None:
            checks.append(_check("access", "fail", f"{w.user} has no role", "ask an admin to add you to [access]"))
            return checks
        checks.append(_check("access", "ok", f"{w.user} has the {role} role"))
        try:
            report = await client.call(q.DoctorRequest())
        except ProtocolError as exc:
            return [*checks, _check("daemon", "fail", exc.message, "see the daemon's log")]
        return checks + report.checks


@main.command("doctor")
@json_option
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the socket, your access, the database, disk and every configured service; say how to fix."""
    g: Globals = ctx.obj
    path = find_socket(g.socket, g.config)
    checks = asyncio.run(diagnose(path))
    report = r.DoctorReport(checks=checks)

    def show() -> None:
        t = Table(box=None, header_style="bold", show_header=False)
        for col in ("", "CHECK", "DETAIL"):
            t.add_column(col, overflow="fold")
        for c in checks:
            fix = f"\n[dim]fix:[/] {escape(printable(c.fix))}" if c.fix else ""  # texts name [sections]: not markup
            t.add_row(MARK[c.status], escape(printable(c.name)), escape(printable(c.detail)) + fix)
        out.print(t)

    emit(report, as_json, show)
    if any(c.status == "fail" for c in checks):
        sys.exit(1)
