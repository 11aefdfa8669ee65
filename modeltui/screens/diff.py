"""Diff screen: what changed between two versions of a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static, TabbedContent, TabPane

from daemon.protocol import requests, results
from daemon.protocol.events import RegistryEvent

from ..widgets import (
    FileChangesTable,
    MetricChangesTable,
    QuietStatic,
    RequirementsTable,
    ValueChangesTable,
    literal,
)
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import RegistryScreen


class DiffScreen(RegistryScreen):
    """``NAME:A`` against ``NAME:B``: files, params, metrics (with deltas), signature, requirements."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "tab('files')", "Files"),
        Binding("p", "tab('params')", "Params"),
        Binding("m", "tab('metrics')", "Metrics"),
        Binding("s", "tab('signature')", "Signature"),
        Binding("e", "tab('requirements')", "Requirements"),
    ]

    def __init__(self, model: str, a: int, b: int) -> None:
        super().__init__()
        self.model_name = model
        self.a = a
        self.b = b

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic(f"{self.model_name}: v{self.a} → v{self.b}", id="diff-title", classes="title")
        with TabbedContent(id="tabs", initial="files"):
            with TabPane("Files", id="files"):
                yield FileChangesTable(id="diff-files")
            with TabPane("Params", id="params"):
                yield ValueChangesTable(id="diff-params")
            with TabPane("Metrics", id="metrics"):
                yield MetricChangesTable(id="diff-metrics")
            with TabPane("Signature", id="signature"):
                yield ValueChangesTable(id="diff-signature")
            with TabPane("Requirements", id="requirements"):
                yield RequirementsTable(id="diff-requirements")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"diff {self.model_name} v{self.a} → v{self.b}"
        super().on_mount()

    def reload(self) -> None:
        self.call(
            requests.Diff(a=f"{self.model_name}:{self.a}", b=f"{self.model_name}:{self.b}"),
            self._show,
            group="diff",
        )

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return any(e.model == self.model_name and e.kind == "version.removed" for e in events)

    def _show(self, diff: results.VersionDiff) -> None:
        flavor = literal(f"  flavor {diff.flavor.a} → {diff.flavor.b}") if diff.flavor else ""
        self.query_one("#diff-title", Static).update(
            f"[b]{literal(self.model_name)}[/b]: v{diff.a.number} ({diff.a.digest[:12]}) → "
            f"v{diff.b.number} ({diff.b.digest[:12]}){flavor}\n"
            f"{len(diff.files)} file(s) changed, {diff.unchanged_files} unchanged · "
            f"{len(diff.params)} param(s) · {len(diff.metrics)} metric(s) · "
            f"{len(diff.signature)} signature change(s) · "
            f"+{len(diff.requirements_added)}/-{len(diff.requirements_removed)} requirement(s)"
        )
        self.query_one("#diff-files", FileChangesTable).show(diff.files)
        self.query_one("#diff-params", ValueChangesTable).show(diff.params)
        self.query_one("#diff-metrics", MetricChangesTable).show(diff.metrics)
        self.query_one("#diff-signature", ValueChangesTable).show(diff.signature)
        self.query_one("#diff-requirements", RequirementsTable).show(
            diff.requirements_added, diff.requirements_removed
        )

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
