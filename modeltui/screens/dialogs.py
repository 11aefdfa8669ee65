"""Modal dialogs: move an alias, roll an alias back, deploy a version, confirm.

Safety rails: every action that stops traffic or moves an alias asks :class:`ConfirmDialog` first, saying
what will happen; an alias move (set, rollback, promote) names the deployments that follow the alias and
will roll out, asked of the daemon just before (:func:`ask_followers`). The dialog defaults to "no": enter
on a fresh dialog cancels, only ``y`` (or the yes button) goes on. Screens ask through :func:`confirm`, and
roll an alias back through :func:`roll_back` (the model view and the deployments view share that flow).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, Select, Static

from daemon.protocol import requests, results
from daemon.protocol.deploy import Backend, DeploymentInfo, check_deployment_name
from daemon.protocol.names import check_alias, check_ref, check_text, parse_ref

from ..format import version_label
from ..widgets import QuietStatic, literal
from .base import RegistryScreen

#: Followers named in a confirmation before the rest are counted ("and 3 more").
FOLLOWERS_SHOWN = 6


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


def followers(deployments: Sequence[DeploymentInfo], model: str, alias: str) -> list[DeploymentInfo]:
    """The deployments that follow ``MODEL@ALIAS`` (their ref names the alias): they roll out when it moves."""
    found = []
    for d in deployments:
        try:
            ref = parse_ref(d.ref)
        except ValueError:
            continue
        if ref.name == model and ref.alias == alias:
            found.append(d)
    return sorted(found, key=lambda d: d.name)


def rollout_text(model: str, alias: str, version: str, deployments: Sequence[DeploymentInfo]) -> str:
    """The line a confirmation ends with: which deployments roll out ``version`` (markup, names literal)."""
    if not deployments:
        return f"No deployment follows {literal(model)}@{literal(alias)}: nothing rolls out."
    names = ", ".join(f"[b]{literal(d.name)}[/b]" for d in deployments[:FOLLOWERS_SHOWN])
    more = len(deployments) - FOLLOWERS_SHOWN
    if more > 0:
        names += f" and {more} more"
    return (f"{len(deployments)} deployment(s) follow {literal(model)}@{literal(alias)} and roll out "
            f"{version}: {names}.")


def ask_followers(screen: RegistryScreen, model: str, alias: str,
                  then: Callable[[list[DeploymentInfo]], None]) -> None:
    """Ask the daemon which deployments follow ``MODEL@ALIAS`` now, then call ``then`` with them."""

    def listed(listing: results.DeploymentList) -> None:
        then(followers(listing.items, model, alias))

    screen.call(requests.ListDeployments(model=model), listed, group="followers")


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no, defaulting to no: the focus starts on the no button, so enter cancels; ``y`` confirms,
    ``n`` and escape cancel. ``yes`` names the action on its button ("Undeploy", "Move")."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]
    AUTO_FOCUS = "#no"

    def __init__(self, question: str, *, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield QuietStatic(self.question, classes="title", id="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="warning")
                yield Button("Cancel (n)", id="no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


def confirm(screen: RegistryScreen, question: str, then: Callable[[], None], *, yes: str = "Yes") -> None:
    """Ask ``question`` (markup; defaulting to no); ``then`` runs on yes, unless the App went read-only
    meanwhile."""

    def answered(confirmed: bool | None) -> None:
        if confirmed and not screen.readonly:
            then()

    screen.app.push_screen(ConfirmDialog(question, yes=yes), answered)


def rollback_question(model: str, alias: str, now: str, before: str, following: Sequence[DeploymentInfo]) -> str:
    """The confirmation of a rollback: where the alias goes back to and what rolls out (markup, names literal)."""
    return (f"Roll [b]{literal(alias)}[/b] of {literal(model)} back from [b]{literal(now)}[/b] "
            f"to [b]{literal(before)}[/b]?\n" + rollout_text(model, alias, before, following))


def roll_back(screen: RegistryScreen, model: str, aliases: Sequence[str], suggestion: str | None = None) -> None:
    """Roll an alias of ``model`` back to its previous version: ask which alias and why (:class:`RollbackDialog`),
    the version it goes back to (its last move), the deployments that follow it; confirm; then ask the daemon
    and reload ``screen``. With one alias to choose from, its history is asked first, so an alias with no
    previous version says so before asking why."""

    def previous(alias: str, then: Callable[[str, str], None]) -> None:
        def got(history: results.AliasHistory) -> None:
            last = history.events[0] if history.events else None
            if last is None or last.from_version is None:
                screen.notify(f"{model}@{alias} has no previous version to roll back to", severity="warning")
                return
            then(version_label(last.to_version), version_label(last.from_version))

        screen.call(requests.AliasHistoryRequest(name=model, alias=alias, limit=1), got, group="history")

    def ask(choice: AliasChoice, now: str, before: str) -> None:
        alias = choice.alias

        def asked(following: list[DeploymentInfo]) -> None:
            confirm(screen, rollback_question(model, alias, now, before, following), yes="Roll back",
                    then=lambda: screen.call(
                        requests.Rollback(name=model, alias=alias, reason=choice.reason),
                        lambda _info: screen.reload(), success=f"rolled {model}@{alias} back to {before}",
                    ))

        ask_followers(screen, model, alias, asked)

    if len(aliases) == 1:
        def known(now: str, before: str) -> None:
            def chosen(choice: AliasChoice | None) -> None:
                if choice is not None:
                    ask(choice, now, before)

            screen.app.push_screen(RollbackDialog(model, aliases), chosen)

        previous(aliases[0], known)
        return

    def chosen(choice: AliasChoice | None) -> None:
        if choice is not None:
            previous(choice.alias, lambda now, before: ask(choice, now, before))

    screen.app.push_screen(RollbackDialog(model, aliases, suggestion), chosen)
