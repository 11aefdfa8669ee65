"""Human output of the CLI: rich tables and short lines. The ``--json`` path never comes here."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table
from rich.text import Text

from daemon.protocol import results as r

from .hints import push_example


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def tags(t: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(t.items())) or "-"


def plain(value: object) -> Text:
    """User-supplied text, shown literally (no markup, no escape sequences)."""
    return Text(str(value))


def models_table(result: r.ModelList) -> Table | Text:
    if not result.items:
        return Text(f"no models yet: push one with `{push_example()}`")
    table = Table("model", "versions", "latest", "aliases", "updated", "description", box=None)
    for m in result.items:
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())) or "-"
        table.add_row(plain(m.name), str(m.versions), str(m.latest or "-"), plain(aliases), when(m.updated_at),
                      plain(m.description.splitlines()[0] if m.description else ""))
    table.caption = f"{len(result.items)} of {result.total}"
    return table


def versions_table(result: r.VersionList) -> Table:
    table = Table("version", "aliases", "digest", "message", "tags", "by", "created", "size", box=None)
    for v in result.items:
        table.add_row(str(v.number), plain(", ".join(v.aliases) or "-"), v.digest[:12], plain(v.message),
                      plain(tags(v.tags)), plain(v.created_by), when(v.created_at), size(v.size))
    table.caption = f"{len(result.items)} of {result.total}"
    return table


def print_model(console: Console, m: r.ModelSummary) -> None:
    console.print(plain(m.name), style="bold")
    if m.description:
        console.print(plain(m.description))
    aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())) or "-"
    console.print(f"versions: {m.versions}  latest: {m.latest or '-'}  created: {when(m.created_at)}")
    console.print(plain(f"aliases: {aliases}"))


def print_version(console: Console, d: r.VersionDetail) -> None:
    v = d.version
    console.print(plain(f"{v.model}:{v.number}"), style="bold")
    rows = [
        ("digest", v.digest),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("parent", str(v.parent) if v.parent else "-"),
        ("flavor", f"{v.flavor} ({d.model_file})"),
        ("message", v.message or "-"),
        ("tags", tags(v.tags)),
        ("by", f"{v.created_by} at {when(v.created_at)}"),
        ("source", (d.source.git_commit or "-") + (" (dirty)" if d.source.git_dirty else "")),
        ("size", f"{size(v.size)} in {v.file_count} files"),
        ("lineage", " ← ".join(str(n) for n in [v.number, *d.lineage])),
        ("children", ", ".join(map(str, d.children)) or "-"),
    ]
    for key, value in rows:
        console.print(Text.assemble((f"{key:>9}  ", "dim"), value))
    for title, mapping in (("params", d.params), ("metrics", d.metrics)):
        if mapping:
            console.print(Text(title, style="bold"))
            for k, val in sorted(mapping.items()):
                console.print(plain(f"  {k} = {json.dumps(val)}"))
    if d.requirements:
        console.print(Text("requirements", style="bold"))
        for req in d.requirements:
            console.print(plain(f"  {req}"))
    table = Table("file", "size", "sha256", box=None, title="files", title_justify="left")
    for f in d.files:
        table.add_row(plain(f.path), size(f.size), f.sha256[:16])
    console.print(table)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def print_diff(console: Console, d: r.VersionDiff) -> None:
    console.print(plain(f"{d.a.model}:{d.a.number} → {d.b.model}:{d.b.number}"), style="bold")
    if d.flavor:
        console.print(plain(f"flavor: {d.flavor.a} → {d.flavor.b}"))
    marks = {"added": ("+", "green"), "removed": ("-", "red"), "changed": ("~", "yellow")}
    table = Table("", "file", "size", "sha256", box=None, title="files", title_justify="left")
    for f in d.files:
        mark, style = marks[f.status]
        sizes = f"{size(f.size_a) if f.size_a is not None else '-'} → {size(f.size_b) if f.size_b is not None else '-'}"
        shas = f"{(f.sha256_a or '-')[:12]} → {(f.sha256_b or '-')[:12]}"
        table.add_row(Text(mark, style=style), plain(f.path), sizes, shas)
    console.print(table)
    console.print(f"{d.unchanged_files} files unchanged")
    if d.params:
        console.print(Text("params", style="bold"))
        for p in d.params:
            console.print(plain(f"  {p.key}: {json.dumps(p.a)} → {json.dumps(p.b)}"))
    if d.metrics:
        console.print(Text("metrics", style="bold"))
        for m in d.metrics:
            delta = "" if m.delta is None else f" ({m.delta:+.6g})"
            style = "green" if (m.delta or 0) > 0 else "red" if (m.delta or 0) < 0 else ""
            console.print(Text.assemble(f"  {m.key}: {_num(m.a)} → {_num(m.b)}", (delta, style)))
    if d.signature:
        console.print(Text("signature", style="bold"))
        for s in d.signature:
            console.print(plain(f"  {s.key}: {s.a} → {s.b}"))
    if d.requirements_added or d.requirements_removed:
        console.print(Text("requirements", style="bold"))
        for req in d.requirements_removed:
            console.print(Text(f"  - {req}", style="red"))
        for req in d.requirements_added:
            console.print(Text(f"  + {req}", style="green"))


def alias_move(e: r.AliasEventInfo) -> Text:
    src = str(e.from_version) if e.from_version else "(none)"
    dst = str(e.to_version) if e.to_version else "(removed)"
    return plain(f"{e.model}@{e.alias}: {src} → {dst}" + (f"  ({e.reason})" if e.reason else ""))


def print_history(console: Console, h: r.AliasHistory) -> None:
    if h.at is not None and h.targets_at is not None:
        console.print(f"at {when(h.at)}:", style="bold")
        for a, v in sorted(h.targets_at.items()):
            console.print(plain(f"  {h.model}@{a} → {v}"))
        if not h.targets_at:
            console.print("  no alias pointed anywhere")
    table = Table("when", "alias", "from", "to", "by", "reason", box=None)
    for e in h.events:
        table.add_row(when(e.at), plain(e.alias), str(e.from_version or "-"), str(e.to_version or "-"),
                      plain(e.by), plain(e.reason))
    console.print(table)


def print_status(console: Console, s: r.DaemonStatus) -> None:
    console.print(f"modeltuid {s.daemon_version} (protocol {s.protocol}), pid {s.pid}, {s.mode} mode, "
                  f"up {s.uptime_seconds:.0f}s")
    console.print(f"socket {s.socket}")
    console.print(f"state  {s.state_dir}")
    console.print(f"{s.models} models, {s.versions} versions, {s.objects} objects ({size(s.object_bytes)}), "
                  f"{s.clients} clients")
    console.print(f"metrics {s.exporter}" if s.exporter else "metrics exporter off")


def uptime(since: datetime | None, now: datetime | None = None) -> str:
    """``3d4h``, ``2h5m``, ``7m12s`` or ``40s``: two units are enough to read at a glance."""
    if since is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - since).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


STATE_STYLE = {"running": "green", "starting": "yellow", "building": "yellow", "pending": "yellow",
               "degraded": "yellow", "crashloop": "bold red", "failed": "red", "stopped": "dim"}


def deployments_table(result: r.DeploymentList) -> Table | Text:
    if not result.items:
        return Text("no deployments: deploy one with `modeltui deploy NAME@production`")
    table = Table("name", "ref", "version", "backend", "state", "health", "endpoint", "uptime", "restarts", box=None)
    for d in result.items:
        version = str(d.version or "-") + (f" → {d.rollout_to}" if d.rollout_to else "")
        state = Text(d.state, style=STATE_STYLE.get(d.state, ""))
        table.add_row(plain(d.name), plain(d.ref), version, d.backend, state, d.health, d.endpoint or "-",
                      uptime(d.started_at), str(d.restarts))
    return table


def print_deployment(console: Console, detail: r.DeploymentDetail) -> None:
    d = detail.deployment
    console.print(Text.assemble((d.name, "bold"), f"  {d.ref} → version {d.version or '-'}  ",
                                (d.state, STATE_STYLE.get(d.state, "")), f"  {d.health}"))
    console.print(f"  endpoint  {d.endpoint or '-'}   backend {d.backend}   restarts {d.restarts}   "
                  f"uptime {uptime(d.started_at)}")
    if d.instance:
        console.print(f"  instance  {d.instance.id} ({d.instance.key})  admin {d.instance.admin_url}")
    if d.image:
        console.print(plain(f"  image     {d.image}"))
    if d.message:
        console.print(plain(f"  {d.message}"))
    for e in detail.events:
        console.print(plain(f"  {when(e.at)}  {e.kind:<14} {e.message}"))
