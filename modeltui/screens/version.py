"""Version screen: manifest, files, params & metrics and lineage of one version, in tabs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static, TabbedContent, TabPane, TextArea

from daemon.protocol import requests, results
from daemon.protocol.events import RegistryEvent

from ..format import printable, short, size, tags_of, when
from ..widgets import FilesTable, LineageTable, ParamsTable, QuietStatic, literal
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import RegistryScreen


class VersionScreen(RegistryScreen):
    """Everything about ``NAME:N``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "tab('manifest')", "Manifest"),
        Binding("f", "tab('files')", "Files"),
        Binding("p", "tab('params')", "Params"),
        Binding("l", "tab('lineage')", "Lineage"),
    ]

    def __init__(self, model: str, number: int) -> None:
        super().__init__()
        self.model_name = model
        self.number = number

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic(f"{self.model_name}:{self.number}", id="version-title", classes="title")
        with TabbedContent(id="tabs", initial="manifest"):
            with TabPane("Manifest", id="manifest"):
                yield TextArea("", read_only=True, show_line_numbers=True, id="manifest-text")
            with TabPane("Files", id="files"):
                yield FilesTable(id="files-table")
            with TabPane("Params & metrics", id="params"):
                yield ParamsTable(id="params-table")
            with TabPane("Lineage", id="lineage"):
                yield LineageTable(id="lineage-table")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"{self.model_name}:{self.number}"
        super().on_mount()

    def reload(self) -> None:
        self.call(requests.Show(ref=f"{self.model_name}:{self.number}"), self._show,
                  group="show")

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return any(e.model == self.model_name for e in events)

    def _show(self, detail: results.VersionDetail) -> None:
        v = detail.version
        self.query_one("#version-title", Static).update(
            f"[b]{literal(v.model)}:{v.number}[/b]  {literal(v.flavor)}  {size(v.size)} in {v.file_count} "
            f"file(s)  aliases: {literal(', '.join(v.aliases)) or '-'}\n"  # registry text: never markup
            f"{when(v.created_at)} by {literal(v.created_by)}  {literal(short(v.message, 50))}  "
            f"{literal(tags_of(v.tags))}"
        )
        area = self.query_one("#manifest-text", TextArea)
        manifest = printable(detail.manifest, keep="\n\t")  # a raw ESC would reach the terminal
        if area.text != manifest:
            area.load_text(manifest)
        self.query_one(FilesTable).show(detail.files)
        self.query_one(ParamsTable).show(detail)
        self.query_one(LineageTable).show(detail)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
