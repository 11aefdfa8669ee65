"""Model screen: the versions of one model, its aliases, and the alias actions.

Moving an alias (``a``) or rolling it back (``r``) confirms first, naming the version the alias goes to and
every deployment that follows the alias (they roll out), asked of the daemon just before the question.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import Static

from daemon.protocol import requests, results
from daemon.protocol.deploy import DeploymentInfo
from daemon.protocol.events import RegistryEvent

from ..format import aliases_of, short
from ..widgets import QuietStatic, VersionsTable, literal
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import RegistryScreen
from .dialogs import AliasChoice, AliasDialog, ask_followers, confirm, roll_back, rollout_text
from .diff import DiffScreen
from .history import HistoryScreen
from .version import VersionScreen

#: Versions per versions.log request: the list comes page after page and shows whole (no paging).
LOG_PAGE = 1000
#: The most versions the table holds (a DataTable stays quick up to here); the status says how many more.
MAX_VERSIONS = 5000


class ModelScreen(RegistryScreen):
    """Versions of one model (newest first) with its aliases."""

    AUTO_FOCUS = "#versions"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Mark"),
        Binding("d", "diff", "Diff"),
        Binding("a", "set_alias", "Alias"),
        Binding("r", "rollback", "Rollback"),
        Binding("h", "history", "History"),
    ]

    aliases: reactive[dict[str, int]] = reactive(dict, init=False)
    """The model's aliases: name → version number."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.model_name = name
        self._versions: dict[int, results.VersionSummary] = {}
        """The versions fetched so far by this load, newest first."""
        self._load = 0
        """Bumped by each reload: pages of an older load are dropped."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic(self.model_name, id="model-title", classes="title")
        yield VersionsTable(id="versions")
        yield QuietStatic("loading…", id="version-status", classes="status")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = self.model_name
        super().on_mount()

    def reload(self) -> None:
        self.call(requests.GetModel(name=self.model_name), self._show_model, group="model")
        self._load += 1
        self._versions = {}
        self._ask_versions(self._load, 0)

    def _ask_versions(self, load: int, offset: int) -> None:
        """Ask the page of versions at ``offset``; its answer asks the next until the list is whole."""
        limit = min(LOG_PAGE, MAX_VERSIONS - offset)

        def got(page: results.VersionList) -> None:
            if load == self._load:
                self._show_versions(load, page, more=len(page.items) == limit)

        self.call(requests.Log(name=self.model_name, limit=limit, offset=offset), got, group="log")

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return any(e.model == self.model_name for e in events)

    def _show_model(self, detail: results.ModelDetail) -> None:
        self.aliases = dict(detail.model.aliases)
        m = detail.model
        text = f"[b]{literal(m.name)}[/b]  {m.versions} version(s)  aliases: {literal(aliases_of(m.aliases))}"
        if m.description:
            text += f"\n{literal(short(m.description, 100))}"  # registry text: never markup
        self.query_one("#model-title", Static).update(text)

    def _show_versions(self, load: int, page: results.VersionList, *, more: bool) -> None:
        """Add a page; the table shows the first page at once, then the whole list when it is all here."""
        first = not self._versions
        for v in page.items:  # a version pushed meanwhile shifts the pages by one: no row twice
            self._versions.setdefault(v.number, v)
        count = len(self._versions)
        more = more and count < min(page.total, MAX_VERSIONS)
        if first or not more:
            self.query_one(VersionsTable).show(list(self._versions.values()))
        shown = self.query_one(VersionsTable).row_count
        if more:
            self._range = f"versions 1-{shown} of {page.total} · loading {count}…"
            self._ask_versions(load, count)
        elif page.total > count:
            self._range = f"newest {count} of {page.total} versions (older: modeltui log --offset {count})"
        else:
            self._range = f"versions {1 if count else 0}-{count} of {page.total}"
        self._show_status()

    _range = "versions"

    def _show_status(self) -> None:
        """The status line: which versions show and which are marked (again after each mark)."""
        marks = self.query_one(VersionsTable).marks_text
        self.query_one("#version-status", Static).update(f"{self._range} · marked: {marks}")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in ("set_alias", "rollback") and self.readonly)

    # -- actions ---------------------------------------------------------------------------------------
    @on(VersionsTable.VersionChosen)
    def _open(self, event: VersionsTable.VersionChosen) -> None:
        self.app.push_screen(VersionScreen(self.model_name, event.number))

    def action_mark(self) -> None:
        table = self.query_one(VersionsTable)
        table.toggle_mark()
        self._show_status()
        marks = ", ".join(f"v{n}" for n in table.marked) or "none"
        self.notify(f"marked: {marks}" + (" — press d to diff" if len(table.marked) == 2 else ""),
                    timeout=2)

    def action_diff(self) -> None:
        table = self.query_one(VersionsTable)
        pair = list(table.marked)
        current = table.current_version
        if len(pair) == 1 and current is not None and current not in pair:
            pair.append(current)
        if len(pair) != 2:
            self.notify("mark two versions with space, then press d", severity="warning")
            return
        a, b = sorted(pair)
        self.app.push_screen(DiffScreen(self.model_name, a, b))

    def action_history(self) -> None:
        self.app.push_screen(HistoryScreen(self.model_name))

    def action_set_alias(self) -> None:
        if self.readonly:
            return
        version = self.query_one(VersionsTable).current_version
        if version is None:
            self.notify("no version to move an alias onto", severity="warning")
            return
        suggestion = next(iter(sorted(self.aliases)), "production")

        def chosen(choice: AliasChoice | None) -> None:
            if choice is None:
                return
            was = self.aliases.get(choice.alias)
            if was == version:
                self.notify(f"{choice.alias} already points to v{version}", severity="warning")
                return
            move = f"from v{was} " if was is not None else ""

            def ask(following: list[DeploymentInfo]) -> None:
                question = (f"Move [b]{literal(choice.alias)}[/b] of {literal(self.model_name)} {move}"
                            f"to [b]v{version}[/b]?\n"
                            + rollout_text(self.model_name, choice.alias, f"v{version}", following))
                confirm(self, question, yes="Move", then=lambda: self.call(
                    requests.AliasSet(name=self.model_name, alias=choice.alias, version=version,
                                      reason=choice.reason),
                    lambda _info: self.reload(),
                    success=f"{choice.alias} → v{version}",
                ))

            ask_followers(self, self.model_name, choice.alias, ask)

        self.app.push_screen(AliasDialog(self.model_name, version, suggestion), chosen)

    def action_rollback(self) -> None:
        if self.readonly:
            return
        if not self.aliases:
            self.notify("this model has no alias to roll back", severity="warning")
            return
        current = self.query_one(VersionsTable).current_version
        on_current = [a for a, n in self.aliases.items() if n == current]
        roll_back(self, self.model_name, sorted(self.aliases), on_current[0] if on_current else None)
