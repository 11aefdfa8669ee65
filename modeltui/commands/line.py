"""The command line ``:`` opens at the bottom of any screen (k9s style): completion, history, errors in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from .complete import CommandSuggester, NameSource, candidates, complete
from .parse import WORDS, Command, CommandError, parse_command

#: What the line above the input says before anything is typed (fits 80 columns).
USAGE = "models deploy alerts maint fleet hosts home logs ctx help q · /RE state= @HOST"

Check = Callable[[Command], str | None]
"""What the App adds to the parser's checks (a context that does not exist): an error, or None."""


class CommandLine(Input):
    """The input: Tab completes the word under the cursor, up/down walk this session's history."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "complete", "complete", show=False),
        Binding("up", "history(-1)", "previous command", show=False),
        Binding("down", "history(1)", "next command", show=False),
    ]

    def __init__(self, history: list[str], names: NameSource) -> None:
        super().__init__(placeholder="command (tab completes, esc cancels)", suggester=CommandSuggester(names),
                         id="command-input")
        self.history = history
        self.names = names
        self._recall = len(history)
        """Where up/down are in the history (its length: the line being typed)."""

    def action_complete(self) -> None:
        done = complete(self.value, self.names)
        if done is None:
            return
        if " " not in done.strip() and done.removeprefix(":").lower() in WORDS:
            done += " "  # a whole command word: go on with its argument
        self.value = done
        self.cursor_position = len(done)

    def action_history(self, step: int) -> None:
        at = min(max(self._recall + step, 0), len(self.history))
        if at == self._recall:
            return
        self._recall = at
        self.value = self.history[at] if at < len(self.history) else ""
        self.cursor_position = len(self.value)


class CommandScreen(ModalScreen[Command | None]):
    """One line at the bottom over the current screen; dismissed with the command to run, or None (esc)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel", show=False)]

    def __init__(self, history: list[str], names: NameSource, check: Check) -> None:
        super().__init__()
        self.history = history
        self.names = names
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(id="command-box"):
            yield Static(USAGE, id="command-hint", markup=False)
            with Horizontal(id="command-row"):
                yield Static(":", id="command-prompt")
                yield CommandLine(self.history, self.names)

    @property
    def hint(self) -> Static:
        return self.query_one("#command-hint", Static)

    @property
    def error(self) -> str | None:
        """The error shown on the line (None when the hint shows completions)."""
        return str(self.hint.render()) if self.hint.has_class("-error") else None

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        found = candidates(event.value, self.names)
        self.hint.remove_class("-error")
        self.hint.update("  ".join(found) if found or event.value.strip() else USAGE)

    @on(Input.Submitted)
    def _run(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        try:
            command = parse_command(text)
        except CommandError as exc:
            self._show_error(str(exc))
            return
        problem = self.check(command)
        if problem is not None:
            self._show_error(problem)
            return
        if not self.history or self.history[-1] != text:
            self.history.append(text)
        self.dismiss(command)

    def _show_error(self, message: str) -> None:
        self.hint.add_class("-error")
        self.hint.update(message)

    def action_cancel(self) -> None:
        self.dismiss(None)
