"""Model screen: the versions of one model, its aliases, and the alias actions.

Moving an alias (``a``) or rolling it back (``r``) confirms first, naming the version the alias goes to and
every deployment that follows the alias (they roll out), asked of the daemon just before the question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import Static

from daemon.protocol import requests, results
from daemon.protocol.deploy import DeploymentInfo
from daemon.protocol.events import RegistryEvent

from ..format import aliases_of, short, version_label
from ..widgets import QuietStatic, VersionsTable, literal
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import RegistryScreen
from .dialogs import AliasChoice, AliasDialog, ConfirmDialog, RollbackDialog, ask_followers, rollout_text
from .diff import DiffScreen
from .history import HistoryScreen
from .version import VersionScreen

PAGE_SIZE = 200


class ModelScreen(RegistryScreen):
    """Versions of one model (newest first) with its aliases."""

    AUTO_FOCUS = "#versions"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Mark"),
        Binding("d", "diff", "Diff"),
        Binding("a", "set_alias", "Alias"),
        Binding("r", "rollback", "Rollback"),
        Binding("h", "history", "History"),
        Binding("right_square_bracket", "next_page", "Next page", key_display="]", show=False),
        Binding("left_square_bracket", "previous_page", "Prev page", key_display="[", show=False),
    ]

    aliases: reactive[dict[str, int]] = reactive(dict, init=False)
    """The model's aliases: name → version number."""
    page_offset: reactive[int] = reactive(0, init=False)
    """Index of the first version shown (newest first, pages of PAGE_SIZE)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.model_name = name

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
        page = requests.Log(name=self.model_name, limit=PAGE_SIZE, offset=self.page_offset)
        self.call(page, self._show_versions, group="log")

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return any(e.model == self.model_name for e in events)

    def _show_model(self, detail: results.ModelDetail) -> None:
        self.aliases = dict(detail.model.aliases)
        m = detail.model
        text = f"[b]{literal(m.name)}[/b]  {m.versions} version(s)  aliases: {literal(aliases_of(m.aliases))}"
        if m.description:
            text += f"\n{literal(short(m.description, 100))}"  # registry text: never markup
        self.query_one("#model-title", Static).update(text)

    def _show_versions(self, versions: results.VersionList) -> None:
        table = self.query_one(VersionsTable)
        table.show(versions.items)
        last = self.page_offset + len(versions.items)
        self._range = f"versions {self.page_offset + 1 if versions.items else 0}-{last} of {versions.total}"
        self._show_status()
        self._total = versions.total

    _total = 0
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

    def action_next_page(self) -> None:
        if self.page_offset + PAGE_SIZE < self._total:
            self.page_offset += PAGE_SIZE

    def action_previous_page(self) -> None:
        if self.page_offset:
            self.page_offset = max(0, self.page_offset - PAGE_SIZE)

    def watch_page_offset(self) -> None:
        self.reload()

    def _confirm(self, question: str, yes: str, then: Callable[[], None]) -> None:
        """Ask (defaulting to no); ``then`` runs on yes, unless the App went read-only meanwhile."""

        def answered(confirmed: bool | None) -> None:
            if confirmed and not self.readonly:
                then()

        self.app.push_screen(ConfirmDialog(question, yes=yes), answered)

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

            def confirm(following: list[DeploymentInfo]) -> None:
                question = (f"Move [b]{literal(choice.alias)}[/b] of {literal(self.model_name)} {move}"
                            f"to [b]v{version}[/b]?\n"
                            + rollout_text(self.model_name, choice.alias, f"v{version}", following))
                self._confirm(question, "Move", lambda: self.call(
                    requests.AliasSet(name=self.model_name, alias=choice.alias, version=version,
                                      reason=choice.reason),
                    lambda _info: self.reload(),
                    success=f"{choice.alias} → v{version}",
                ))

            ask_followers(self, self.model_name, choice.alias, confirm)

        self.app.push_screen(AliasDialog(self.model_name, version, suggestion), chosen)

    def action_rollback(self) -> None:
        if self.readonly:
            return
        if not self.aliases:
            self.notify("this model has no alias to roll back", severity="warning")
            return
        current = self.query_one(VersionsTable).current_version
        on_current = [a for a, n in self.aliases.items() if n == current]
        suggestion = on_current[0] if on_current else None

        def chosen(choice: AliasChoice | None) -> None:
            if choice is None:
                return
            alias, model = choice.alias, self.model_name

            def got_history(history: results.AliasHistory) -> None:
                last = history.events[0] if history.events else None
                if last is None or last.from_version is None:
                    self.notify(f"{model}@{alias} has no previous version to roll back to", severity="warning")
                    return
                now, before = version_label(last.to_version), version_label(last.from_version)

                def confirm(following: list[DeploymentInfo]) -> None:
                    question = (f"Roll [b]{literal(alias)}[/b] of {literal(model)} back from [b]{now}[/b] "
                                f"to [b]{before}[/b]?\n" + rollout_text(model, alias, before, following))
                    self._confirm(question, "Roll back", lambda: self.call(
                        requests.Rollback(name=model, alias=alias, reason=choice.reason),
                        lambda _info: self.reload(),
                        success=f"rolled {alias} back to {before}",
                    ))

                ask_followers(self, model, alias, confirm)

            self.call(requests.AliasHistoryRequest(name=model, alias=alias, limit=1), got_history,
                      group="history")

        self.app.push_screen(RollbackDialog(self.model_name, sorted(self.aliases), suggestion), chosen)
