"""Human output of the CLI: rich tables and short lines. The ``--json`` path never comes here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from daemon.protocol import results as r
from daemon.protocol.deploy import DeploymentInfo

from ..format import (
    DEPLOYMENT_TONE,
    PALETTE,
    aliases_of,
    code_rows,
    duration,
    printable,
    signer,
    size,
    tags_of,
    uptime,
    when,
)
from ..hints import push_example


def plain(value: object, *, newlines: bool = False) -> Text:
    """User-supplied text, shown literally: no markup, control characters spelt out (newlines kept only
    with ``newlines``, for multi-line text printed on its own)."""
    return Text(printable(value, keep="\n" if newlines else ""))


def one_line(value: str) -> str:
    """The first line of a free text, with an ellipsis when more follows (a table row stays one line)."""
    lines = value.strip().splitlines()
    if not lines:
        return ""
    return lines[0].rstrip() + (" …" if len(lines) > 1 else "")


# -- tables that fit the terminal ------------------------------------------------------------------------------
GAP = 2  # spaces between columns


@dataclass(frozen=True)
class Col:
    """A column of a :class:`FitTable`. ``drop``: optional columns go in this order (1 first) when the table
    is too wide; 0 never goes (names, refs, endpoints, states). ``shorten``: free text is cut with an
    ellipsis to the room left, down to this many cells, before the table drops anything for it."""

    header: str
    drop: int = 0
    shorten: int = 0
    justify: JustifyMethod = "left"


@dataclass(frozen=True)
class Cell:
    """A cell with a shorter spelling that says the same (``@production`` beside the default name)."""

    full: Text
    short: Text


CellValue = str | Text | Cell


def _text(value: CellValue, short: bool) -> Text:
    if isinstance(value, Cell):
        return value.short if short else value.full
    return value if isinstance(value, Text) else plain(value)


class FitTable:
    """A borderless table laid out for the width it is printed at: it keeps the columns an operator needs
    whole, uses short spellings, then drops optional columns and shortens free text, in that order. When
    even the kept columns do not fit, they stay whole and the terminal wraps the line."""

    def __init__(self, cols: Sequence[Col], rows: Iterable[Sequence[CellValue]], *, caption: str | None = None,
                 title: str | None = None) -> None:
        self.cols = list(cols)
        self.rows = [list(row) for row in rows]
        self.caption = caption
        self.title = title

    def _natural(self, index: int, short: bool) -> int:
        cells = [cell_len(_text(row[index], short).plain) for row in self.rows]
        return max([cell_len(self.cols[index].header), *cells])

    def _need(self, shown: list[int], short: bool) -> int:
        widths = [min(self._natural(i, short), self.cols[i].shorten or 10**9) for i in shown]
        return sum(widths) + GAP * (len(shown) - 1)

    def _layout(self, width: int) -> tuple[list[int], bool]:
        """(the columns shown, whether short spellings are used) for ``width`` cells."""
        shown = list(range(len(self.cols)))
        short = self._need(shown, False) > width
        optional = sorted((c.drop, i) for i, c in enumerate(self.cols) if c.drop)
        while self._need(shown, short) > width and optional:
            shown.remove(optional.pop(0)[1])
        return shown, short

    def _widths(self, shown: list[int], short: bool, width: int) -> dict[int, int]:
        widths = {i: self._natural(i, short) for i in shown}
        free = sorted((widths[i], i) for i in shown if self.cols[i].shorten)
        room = width - GAP * (len(shown) - 1) - sum(w for i, w in widths.items() if not self.cols[i].shorten)
        for n, (natural, i) in enumerate(free):
            share = room // (len(free) - n)
            widths[i] = max(min(natural, share), min(natural, self.cols[i].shorten))
            room -= widths[i]
        return widths

    def table(self, width: int) -> tuple[Table, int]:
        """The Rich table for ``width`` cells, and the width it needs (more than ``width`` only when the
        kept columns alone are wider)."""
        shown, short = self._layout(width)
        widths = self._widths(shown, short, width)
        table = Table(box=None, pad_edge=False, padding=(0, GAP // 2), caption=self.caption, title=self.title,
                      title_justify="left")
        for i in shown:
            col = self.cols[i]
            table.add_column(col.header, width=widths[i], no_wrap=True, overflow="ellipsis",
                             justify=col.justify)
        for row in self.rows:
            table.add_row(*(_text(row[i], short) for i in shown))
        return table, sum(widths.values()) + GAP * (len(shown) - 1)

    def records(self, width: int) -> Iterator[Text]:
        """Each row as a block: its first cell, then ``header value`` pairs of the kept columns, packed into
        lines of ``width``; a value is never cut (for terminals too narrow for the kept columns side by side)."""
        if self.title:
            yield Text(self.title)
        for row in self.rows:
            head = _text(row[0], False)
            if head.plain:
                yield Text.assemble(head, style="bold")
            pairs = [Text.assemble((f"{col.header} " if col.header else "", "dim"), _text(cell, False))
                     for col, cell in zip(self.cols[1:], row[1:], strict=True) if not col.drop]
            yield from _packed([p for p in pairs if p.plain.strip()], width, indent=2 if head.plain else 0)
        if self.caption:
            yield Text(self.caption, style="dim")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table, needed = self.table(options.max_width)
        if needed > options.max_width:
            yield from self.records(options.max_width)
        else:
            yield table

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        _, needed = self.table(options.max_width)
        return Measurement(min(needed, options.max_width), min(needed, options.max_width))


def _packed(pairs: list[Text], width: int, indent: int) -> Iterator[Text]:
    line = Text(" " * indent)
    for pair in pairs:
        if line.plain.strip() and line.cell_len + GAP + pair.cell_len > width:
            yield line
            line = Text(" " * indent)
        line.append_text(Text(" " * GAP) + pair if line.plain.strip() else pair)
    if line.plain.strip():
        yield line


MODEL_COLS = (Col("model"), Col("versions", drop=2, justify="right"), Col("latest", justify="right"), Col("aliases"),
              Col("updated", drop=1), Col("description", drop=3, shorten=16))


def models_table(result: r.ModelList) -> FitTable | Text:
    if not result.items:
        return Text(f"no models yet: push one with `{push_example()}`")
    rows = [(m.name, str(m.versions), str(m.latest or "-"),
             aliases_of(m.aliases), when(m.updated_at),
             one_line(m.description)) for m in result.items]
    return FitTable(MODEL_COLS, rows, caption=f"{len(result.items)} of {result.total}")


VERSION_COLS = (Col("version", justify="right"), Col("aliases"), Col("digest", drop=2),
                Col("message", drop=6, shorten=20), Col("tags", drop=4, shorten=16), Col("by", drop=3),
                Col("created", drop=5), Col("size", drop=1, justify="right"), Col("signed", drop=7, shorten=16))


def versions_table(result: r.VersionList) -> FitTable:
    rows = [(str(v.number), ", ".join(v.aliases) or "-", v.digest[:12], one_line(v.message), tags_of(v.tags),
             v.created_by, when(v.created_at), size(v.size), signer(result.signed.get(v.number)))
            for v in result.items]
    return FitTable(VERSION_COLS, rows, caption=f"{len(result.items)} of {result.total}")


def print_model(console: Console, m: r.ModelSummary) -> None:
    console.print(plain(m.name), style="bold")
    if m.description:
        console.print(plain(m.description, newlines=True))
    console.print(f"versions: {m.versions}  latest: {m.latest or '-'}  created: {when(m.created_at)}")
    console.print(plain(f"aliases: {aliases_of(m.aliases)}"))


def print_version(console: Console, d: r.VersionDetail) -> None:
    v = d.version
    console.print(plain(f"{v.model}:{v.number}"), style="bold")
    rows = [
        ("digest", v.digest),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("parent", str(v.parent) if v.parent else "-"),
        ("flavor", f"{v.flavor} ({d.model_file})"),
        ("message", v.message or "-"),
        ("tags", tags_of(v.tags)),
        ("by", f"{v.created_by} at {when(v.created_at)}"),
        *(("signed", signer(sig, long=True)) for sig in d.signatures),
        *([("signed", "unsigned")] if not d.signatures else []),
        *code_rows(d.code),
        ("source", (d.source.git_commit or "-") + (" (dirty)" if d.source.git_dirty else "")),
        ("size", f"{size(v.size)} in {v.file_count} files"),
        ("lineage", " ← ".join(str(n) for n in [v.number, *d.lineage])),
        ("children", ", ".join(map(str, d.children)) or "-"),
    ]
    for key, value in rows:
        console.print(Text.assemble((f"{key:>9}  ", "dim"), plain(value, newlines=key == "message")))
    for title, mapping in (("params", d.params), ("metrics", d.metrics)):
        if mapping:
            console.print(Text(title, style="bold"))
            for k, val in sorted(mapping.items()):
                console.print(plain(f"  {k} = {json.dumps(val)}"))
    if d.requirements:
        console.print(Text("requirements", style="bold"))
        for req in d.requirements:
            console.print(plain(f"  {req}"))
    files = [(f.path, size(f.size), f.sha256[:16]) for f in d.files]
    console.print(FitTable(FILE_COLS, files, title="files"))


FILE_COLS = (Col("file"), Col("size", drop=2, justify="right"), Col("sha256", drop=1))
DIFF_FILE_COLS = (Col(""), Col("file"), Col("size", drop=2), Col("sha256", drop=1))


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def print_diff(console: Console, d: r.VersionDiff) -> None:
    console.print(plain(f"{d.a.model}:{d.a.number} → {d.b.model}:{d.b.number}"), style="bold")
    if d.flavor:
        console.print(plain(f"flavor: {d.flavor.a} → {d.flavor.b}"))
    marks = {"added": ("+", "green"), "removed": ("-", "red"), "changed": ("~", "yellow")}
    rows = []
    for f in d.files:
        mark, style = marks[f.status]
        sizes = f"{size(f.size_a) if f.size_a is not None else '-'} → {size(f.size_b) if f.size_b is not None else '-'}"
        shas = f"{(f.sha256_a or '-')[:12]} → {(f.sha256_b or '-')[:12]}"
        rows.append((Text(mark, style=style), f.path, sizes, shas))
    console.print(FitTable(DIFF_FILE_COLS, rows, title="files"))
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
            console.print(Text.assemble(plain(f"  {m.key}: {_num(m.a)} → {_num(m.b)}"), (delta, style)))
    if d.signature:
        console.print(Text("signature", style="bold"))
        for s in d.signature:
            console.print(plain(f"  {s.key}: {s.a} → {s.b}"))
    if d.requirements_added or d.requirements_removed:
        console.print(Text("requirements", style="bold"))
        for req in d.requirements_removed:
            console.print(plain(f"  - {req}"), style="red")
        for req in d.requirements_added:
            console.print(plain(f"  + {req}"), style="green")


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
    rows = [(when(e.at), e.alias, str(e.from_version or "-"), str(e.to_version or "-"), e.by, one_line(e.reason))
            for e in h.events]
    console.print(FitTable(HISTORY_COLS, rows))


HISTORY_COLS = (Col("when", drop=3), Col("alias"), Col("from", justify="right"), Col("to", justify="right"),
                Col("by", drop=1), Col("reason", drop=2, shorten=16))


def print_status(console: Console, s: r.DaemonStatus) -> None:
    console.print(plain(f"modeltuid {s.daemon_version} (protocol {s.protocol}), pid {s.pid}, {s.mode} mode, "
                        f"up {duration(s.uptime_seconds)}"))
    console.print(plain(f"socket {s.socket}"))
    console.print(plain(f"state  {s.state_dir}"))
    console.print(f"{s.models} models, {s.versions} versions, {s.objects} objects ({size(s.object_bytes)}), "
                  f"{s.clients} clients")
    console.print(plain(f"metrics {s.exporter}" if s.exporter else "metrics exporter off"))


def ref_cell(name: str, ref: str) -> Cell:
    """A deployment's ref, spelt ``@ALIAS`` or ``:N`` where room is short and its name is the default one
    ``deploy`` gives that ref (``MODEL-ALIAS``, ``MODEL``): the name already says the model."""
    model, at, alias = ref.partition("@")
    if at and name == f"{model}-{alias}":
        return Cell(plain(ref), plain(f"@{alias}"))
    model, colon, number = ref.partition(":")
    if colon and name == model:
        return Cell(plain(ref), plain(f":{number}"))
    return Cell(plain(ref), plain(ref))


def toned(word: str, tones: dict[str, str], shown: str | None = None) -> Text:
    """``word`` (spelt ``shown`` when given) in the colour of its tone in ``tones`` (plain when it has none)."""
    tone = tones.get(word)
    return Text(printable(word if shown is None else shown), style=PALETTE[tone].style if tone else "")


def state_text(state: str) -> Text:
    return toned(state, DEPLOYMENT_TONE)


DEPLOYMENT_COLS = (Col("name"), Col("ref"), Col("ver"), Col("backend", drop=1), Col("state"),
                   Col("health", drop=4), Col("endpoint"), Col("uptime", drop=3), Col("restarts", drop=2))


def deployment_row(d: DeploymentInfo) -> list[CellValue]:
    version = str(d.version or "-") + (f" → {d.rollout_to}" if d.rollout_to else "")
    return [d.name, ref_cell(d.name, d.ref), version, d.backend, state_text(d.state), d.health, d.endpoint or "-",
            uptime(d.started_at), str(d.restarts)]


def deployments_table(result: r.DeploymentList) -> FitTable | Text:
    if not result.items:
        return Text("no deployments: deploy one with `modeltui deploy NAME@production`")
    return FitTable(DEPLOYMENT_COLS, [deployment_row(d) for d in result.items])


def print_deployment(console: Console, detail: r.DeploymentDetail) -> None:
    d = detail.deployment
    console.print(Text.assemble((printable(d.name), "bold"), plain(f"  {d.ref} → version {d.version or '-'}  "),
                                state_text(d.state), plain(f"  {d.health}")))
    console.print(plain(f"  endpoint  {d.endpoint or '-'}   backend {d.backend}   restarts {d.restarts}   "
                        f"uptime {uptime(d.started_at)}"))
    if d.instance:
        console.print(plain(f"  instance  {d.instance.id} ({d.instance.key})  admin {d.instance.admin_url}"))
    if d.image:
        console.print(plain(f"  image     {d.image}"))
    if d.message:
        console.print(plain(f"  {d.message}", newlines=True))
    for e in detail.events:
        console.print(plain(f"  {when(e.at)}  {e.kind:<14} {e.message}"))
