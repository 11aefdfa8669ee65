"""Modal dialogs: move an alias, roll an alias back, deploy a version, confirm."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, Select, Static

from daemon.protocol.deploy import Backend, check_deployment_name
from daemon.protocol.names import check_alias, check_ref, check_text

from ..widgets import QuietStatic


class AliasValidator(Validator):
    """An alias name as the daemon accepts it (``daemon.protocol.names.check_alias``)."""

    def validate(self, value: str) -> ValidationResult:
        try:
            check_alias(value)
        except ValueError as exc:
            return self.failure(str(exc))
        return self.success()


class ReasonValidator(Validator):
    """One printable line of at most 512 characters (the protocol's ``Line``)."""

    def validate(self, value: str) -> ValidationResult:
        try:
            check_text(value, limit=512, what="reason", multiline=False)
        except ValueError as exc:
            return self.failure(str(exc))
        return self.success()


@dataclass(frozen=True)
class AliasChoice:
    """What the alias dialog returns."""

    alias: str
    reason: str


class _FormDialog(ModalScreen[AliasChoice | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _error(self, text: str) -> None:
        self.query_one("#error", Label).update(text)

    def _reason(self) -> str | None:
        box = self.query_one("#reason", Input)
        result = box.validate(box.value)
        if result is not None and not result.is_valid:
            self._error("; ".join(result.failure_descriptions))
            return None
        return box.value.strip()

    @on(Button.Pressed, "#cancel")
    def _cancelled(self) -> None:
        self.dismiss(None)


class AliasDialog(_FormDialog):
    """Ask which alias to move onto a version, and why."""

    AUTO_FOCUS = "#alias"

    def __init__(self, model: str, version: int, suggestion: str = "production") -> None:
        super().__init__()
        self.model = model
        self.version = version
        self.suggestion = suggestion

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Move an alias of [b]{self.model}[/b] onto [b]v{self.version}[/b]", classes="title")
            yield Label("alias")
            yield Input(self.suggestion, id="alias", validators=[AliasValidator()], valid_empty=False)
            yield Label("reason")
            yield Input(placeholder="why (recorded in the alias history)", id="reason",
                        validators=[ReasonValidator()])
            yield Label("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Move", id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    @on(Input.Changed, "#alias")
    def _alias_changed(self, event: Input.Changed) -> None:
        result = event.validation_result
        self._error("" if result is None or result.is_valid else "; ".join(result.failure_descriptions))

    @on(Input.Submitted, "#alias")
    def _next(self) -> None:
        self.query_one("#reason", Input).focus()

    @on(Input.Submitted, "#reason")
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        box = self.query_one("#alias", Input)
        alias = box.value.strip()
        try:
            check_alias(alias)
        except ValueError as exc:
            self._error(str(exc))
            box.focus()
            return
        reason = self._reason()
        if reason is not None:
            self.dismiss(AliasChoice(alias, reason))


class RollbackDialog(_FormDialog):
    """Ask which alias to roll back to its previous version, and why."""

    AUTO_FOCUS = "#reason"

    def __init__(self, model: str, aliases: Sequence[str], suggestion: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.aliases = list(aliases)
        self.suggestion = suggestion if suggestion in self.aliases else self.aliases[0]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Roll back an alias of [b]{self.model}[/b] to its previous version", classes="title")
            yield Label("alias")
            yield Select([(a, a) for a in self.aliases], value=self.suggestion, allow_blank=False, id="alias")
            yield Label("reason")
            yield Input(placeholder="why (recorded in the alias history)", id="reason",
                        validators=[ReasonValidator()])
            yield Label("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Roll back", id="ok", variant="warning")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted, "#reason")
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        selected = self.query_one("#alias", Select).value
        reason = self._reason()
        if isinstance(selected, str) and reason is not None:
            self.dismiss(AliasChoice(selected, reason))


@dataclass(frozen=True)
class DeployChoice:
    """What the deploy dialog returns."""

    ref: str
    backend: Backend
    port: int | None
    name: str | None


class RefValidator(Validator):
    """``NAME``, ``NAME:N`` or ``NAME@ALIAS`` (``daemon.protocol.names.check_ref``)."""

    def validate(self, value: str) -> ValidationResult:
        try:
            check_ref(value.strip())
        except ValueError as exc:
            return self.failure(str(exc))
        return self.success()


def parse_port(text: str) -> int | None:
    """Empty → None (the daemon picks one); else a port in 1024-65535. Raises ValueError."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 1024 <= int(text) <= 65535:
        raise ValueError(f"invalid port {text[:10]!r}: use 1024-65535, or leave it empty for a free one")
    return int(text)


class DeployDialog(ModalScreen[DeployChoice | None]):
    """Ask what to deploy: a ref, the backend, optionally a port and a deployment name."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#ref"

    def __init__(self, suggestion: str = "") -> None:
        super().__init__()
        self.suggestion = suggestion

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Deploy a version ([b]NAME@ALIAS[/b] follows the alias, [b]NAME:N[/b] is pinned)",
                         classes="title")
            yield Label("ref")
            yield Input(self.suggestion, placeholder="NAME@ALIAS or NAME:N", id="ref",
                        validators=[RefValidator()], valid_empty=False)
            with Horizontal(classes="fields"):
                with Vertical():
                    yield Label("backend")
                    yield Select([("process", "process"), ("docker", "docker")], value="process",
                                 allow_blank=False, id="backend")
                with Vertical():
                    yield Label("port")
                    yield Input(placeholder="any free", id="port", type="integer")
                with Vertical():
                    yield Label("name")
                    yield Input(placeholder="from the model", id="name")
            yield Label("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Deploy", id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancelled(self) -> None:
        self.dismiss(None)

    @on(Input.Changed, "#ref")
    def _ref_changed(self, event: Input.Changed) -> None:
        result = event.validation_result
        self._error("" if result is None or result.is_valid else "; ".join(result.failure_descriptions))

    def _error(self, text: str) -> None:
        self.query_one("#error", Label).update(text)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        ref = self.query_one("#ref", Input).value.strip()
        backend = self.query_one("#backend", Select).value
        name = self.query_one("#name", Input).value.strip() or None
        try:
            check_ref(ref)
            port = parse_port(self.query_one("#port", Input).value)
            if name is not None:
                check_deployment_name(name)
        except ValueError as exc:
            self._error(str(exc))
            return
        if backend in ("process", "docker"):
            self.dismiss(DeployChoice(ref, "docker" if backend == "docker" else "process", port, name))


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]
    AUTO_FOCUS = "#no"

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield QuietStatic(self.question, classes="title")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="primary")
                yield Button("No (n)", id="no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
