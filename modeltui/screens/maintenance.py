"""Maintenance: the runs that evaluate, retrain, gate and promote models, and one run in detail.

The view asks ``maintain.runs`` (newest first) and, for the highlighted run, ``maintain.show``: champion
against challenger (version and score), the gate's verdict and each step with its state, duration and the
first line of its message. Maintenance runs push no events of their own, so while the view is shown a
one-second timer re-asks whenever a shown run is ``running`` (and every :data:`IDLE_TICKS` seconds
otherwise, to catch runs started elsewhere); registry events (a challenger pushed, an alias moved) re-ask
at once.

``a`` approves and ``x`` rejects a run awaiting approval (a reason, then a confirmation: an approval names
the alias that moves, from which version to which, and the deployments that follow it and roll out), ``r`` starts a
run of the highlighted run's model now (confirmed), ``p`` shows that model's effective policy. The three
actions that change something are hidden and refused in read-only mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

from daemon.protocol import requests, results
from daemon.protocol.deploy import DeploymentInfo
from daemon.protocol.events import RegistryEvent

from ..format import PALETTE, RUN_TONE, STEP_TONE, elapsed, short, version_label, when_short
from ..widgets import KeyedTable, QuietStatic, literal
from ..widgets.shell_footer import ShellFooter
from ..widgets.status_header import StatusHeader
from .base import PollingScreen
from .dialogs import ReasonValidator, ask_followers, confirm, rollout_text

#: Runs asked for (newest first).
RUN_LIMIT = 200
#: Seconds between two asks while a shown run is running.
LIVE_SECONDS = 1.0
#: Without a running run, the list is re-read every this many ticks (runs started by the CLI or a schedule).
IDLE_TICKS = 5
#: Actions that change state: hidden and refused in read-only mode.
MUTATIONS = frozenset({"approve", "reject", "run_now", "cancel_run"})
def score(value: float | None) -> str:
    """A metric's value to three decimals (``-`` when there is none)."""
    return "-" if value is None else f"{value:.3f}"


def scores(run: results.MaintainRunInfo) -> str:
    """``f1 0.712 → 0.904``: the metric, the champion's score, the challenger's."""
    if not run.metric and run.champion_score is None:
        return "-"
    text = f"{run.metric} {score(run.champion_score)}".strip()
    if run.challenger_score is not None:
        text += f" → {score(run.challenger_score)}"
    return text


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def detail_text(run: results.MaintainRunInfo, width: int = 78) -> str:
    """The detail pane's markup: the run, champion beside challenger, the verdict, the steps."""
    tone = PALETTE[RUN_TONE.get(run.state, "off")].variable
    lines = [
        f"[b]run {run.id}[/b]  {literal(run.model)}  [b {tone}]{run.state}[/]  trigger {literal(run.trigger)}"
        + (f"  took {elapsed(run.started_at, run.finished_at)}" if run.finished_at or run.state == "running" else ""),
        f"  {'':<10}{'champion':<14}{'challenger':<14}",
        f"  {'version':<10}{version_label(run.champion):<14}{version_label(run.challenger):<14}",
    ]
    delta = ""
    if run.champion_score is not None and run.challenger_score is not None:
        delta = f"({run.challenger_score - run.champion_score:+.3f})"
    metric = literal(short(run.metric or "score", 9))
    lines.append(f"  {metric:<10}{score(run.champion_score):<14}{score(run.challenger_score):<14}{delta}")
    verdict = literal(short(run.reason, width - 11)) if run.reason else "[dim]none yet[/dim]"
    lines.append(f"[b]verdict[/b]  {verdict}")
    if run.steps:
        lines.append("[b]steps[/b]")
    for step in run.steps:
        step_tone = PALETTE[STEP_TONE.get(step.state, "off")].variable
        name = literal(f"{step.name:<20}")
        head = f"  [{step_tone}]{step.state:<8}[/] {name} {elapsed(step.started_at, step.finished_at):>7}"
        message = first_line(step.message)
        room = width - 41
        lines.append(head + (f"  {literal(short(message, room))}" if message and room > 8 else ""))
    return "\n".join(lines)


def policy_text(info: results.MaintainPolicyInfo) -> str:
    """The effective policy, overridden keys marked, then what would stop a run."""
    lines = [f"champion {version_label(info.champion)}", ""]
    for key, value in info.policy.items():
        mark = "  [b $accent](set)[/]" if key in info.overrides else ""
        lines.append(f"{literal(key):<22} {literal(short(repr(value), 40))}{mark}")
    if not info.policy:
        lines.append("[dim]no maintenance policy[/dim]")
    lines.append("")
    if info.problems:
        lines += [f"[{PALETTE['warn'].variable}]problem:[/] {literal(p)}" for p in info.problems]
    else:
        lines.append(f"[{PALETTE['ok'].variable}]no problems: a run can start[/]")
    return "\n".join(lines)


class MaintenanceRunsTable(KeyedTable):
    """One row per run, newest first; the state coloured. The columns a user checks first come first."""

    COLUMNS = ("run", "model", "state", "trigger", "metric", "started", "reason")
    # At 80 columns: run, model, state and metric whole, the reason cut to the room left; the trigger hides
    # first, then the start time (the detail pane below shows both).
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {"trigger": 2, "started": 1}
    FLEX_COLUMN = "reason"

    def show(self, runs: Sequence[results.MaintainRunInfo]) -> None:
        self.replace_rows(
            (
                str(run.id),
                (
                    str(run.id),
                    Text(run.model),
                    self.toned(run.state, RUN_TONE),
                    Text(short(run.trigger, 16)),
                    Text(scores(run)),
                    when_short(run.started_at),
                    Text(short(run.reason, 30)),
                ),
            )
            for run in sorted(runs, key=lambda r: r.id, reverse=True)
        )


class ReasonDialog(ModalScreen[str | None]):
    """Ask why (one line, recorded with the decision)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#reason"

    def __init__(self, question: str, button: str) -> None:
        super().__init__()
        self.question = question
        self.button = button

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield QuietStatic(self.question, classes="title")
            yield Label("reason")
            yield Input(placeholder="why (recorded with the run)", id="reason", validators=[ReasonValidator()])
            yield Label("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button(self.button, id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancelled(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#reason")
    @on(Button.Pressed, "#ok")
    def _submit(self) -> None:
        box = self.query_one("#reason", Input)
        result = box.validate(box.value)
        if result is not None and not result.is_valid:
            self.query_one("#error", Label).update("; ".join(result.failure_descriptions))
            return
        self.dismiss(box.value.strip())


class PolicyDialog(ModalScreen[None]):
    """A model's effective maintenance policy (read only)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("p", "close", "Close", show=False),
    ]
    AUTO_FOCUS = "#policy-close"

    def __init__(self, info: results.MaintainPolicyInfo) -> None:
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="policy-dialog"):
            yield QuietStatic(f"Maintenance policy of [b]{literal(self.info.model)}[/b]", classes="title")
            with VerticalScroll(id="policy-scroll"):
                yield QuietStatic(policy_text(self.info), id="policy-text")
            with Horizontal(classes="buttons"):
                yield Button("Close", id="policy-close")

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#policy-close")
    def _close_pressed(self) -> None:
        self.dismiss(None)


class MaintenanceScreen(PollingScreen):
    """Every maintenance run, newest first, and the highlighted run in detail (live while it runs)."""

    AUTO_FOCUS = "#maintenance-runs"
    POLL_SECONDS = LIVE_SECONDS

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve"),
        Binding("x", "reject", "Reject"),
        Binding("r", "run_now", "Run now"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("p", "policy", "Policy"),
        Binding("R", "refresh", "Refresh", key_display="R", show=False),  # g: the first row of a list
    ]

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self.model = model
        """Only this model's runs (None: all)."""
        self.runs: dict[int, results.MaintainRunInfo] = {}
        """The runs shown, by id (details replace list entries as they come)."""
        self.select: int | None = None
        """A run to move the cursor to once the list has it (one just started)."""
        self.highlighted: str | None = None
        """The key of the run whose detail was last asked for on a highlight."""
        self.ticks = 0

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield QuietStatic("maintenance: loading…", id="maintenance-title", classes="title")
        yield MaintenanceRunsTable(id="maintenance-runs")
        with VerticalScroll(id="maintenance-detail-box"):
            yield QuietStatic("", id="maintenance-detail")
        yield QuietStatic("loading…", id="maintenance-status", classes="status")
        yield ShellFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"maintenance of {self.model}" if self.model else "maintenance"
        super().on_mount()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in MUTATIONS and self.readonly)

    # -- asking ----------------------------------------------------------------------------------------
    def reload(self) -> None:
        self.call(
            requests.MaintainRuns(name=self.model, limit=RUN_LIMIT),
            self._show_list,
            group="list",
        )
        current = self.current
        if current is not None:
            self._ask(current.id)

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        return self.model is None or any(e.model == self.model for e in events)

    def _ask(self, run: int) -> None:
        self.call(requests.MaintainShow(run=run), self._show_run, group="show")

    def poll(self) -> None:
        """Every second while a shown run is running; else every IDLE_TICKS seconds (runs the CLI or a
        schedule started)."""
        self.ticks += 1
        if any(r.state == "running" for r in self.runs.values()) or self.ticks % IDLE_TICKS == 0:
            self.reload()

    # -- showing ---------------------------------------------------------------------------------------
    @property
    def current(self) -> results.MaintainRunInfo | None:
        """The highlighted run."""
        key = self.query_one(MaintenanceRunsTable).current_key
        return self.runs.get(int(key)) if key is not None else None

    def _show_list(self, listing: results.MaintainRunList) -> None:
        first = not self.answers
        self.answers += 1
        kept = {run_id: run for run_id, run in self.runs.items() if run.steps}
        self.runs = {}
        for run in listing.items:  # a detail read since keeps its steps unless the list has newer news
            old = kept.get(run.id)
            self.runs[run.id] = old if old is not None and old.state == run.state and not run.steps else run
        table = self.query_one(MaintenanceRunsTable)
        table.show(list(self.runs.values()))
        if self.select is not None and str(self.select) in table.rows:
            table.move_cursor(row=table.get_row_index(str(self.select)), animate=False)
            self.select = None
        self._show_title()
        self._show_detail()
        if first and self.current is not None:
            self._ask(self.current.id)
        if not self.runs:
            self._status(
                "no maintenance runs yet"
                + (
                    ""
                    if self.readonly
                    else " — set a policy with modeltui maintain set, then r on a run or maintain run-now"
                )
            )
        elif str(self.query_one("#maintenance-status", Static).render()).startswith(("loading", "no maint")):
            self._status("a approve · x reject · r run now · p policy" if not self.readonly else "p: policy")

    def _show_run(self, run: results.MaintainRunInfo) -> None:
        self.runs[run.id] = run
        self.query_one(MaintenanceRunsTable).show(list(self.runs.values()))
        self._show_title()
        self._show_detail()

    def _show_title(self) -> None:
        waiting = sum(r.state == "awaiting_approval" for r in self.runs.values())
        running = sum(r.state == "running" for r in self.runs.values())
        where = f" of [b]{literal(self.model)}[/b]" if self.model else ""
        text = f"maintenance{where}: [b]{len(self.runs)}[/b] run(s)"
        if running:
            text += f", [b $accent]{running} running[/]"
        if waiting:
            text += f", [b {PALETTE['warn'].variable}]{waiting} awaiting approval[/]"
        self.query_one("#maintenance-title", Static).update(text)

    def _show_detail(self) -> None:
        run = self.current
        text = detail_text(run, max(40, self.size.width - 2)) if run is not None else "[dim]no run selected[/dim]"
        self.query_one("#maintenance-detail", Static).update(text)

    def _status(self, text: str) -> None:
        self.query_one("#maintenance-status", Static).update(literal(short(text, max(20, self.size.width - 2))))

    @on(DataTable.RowHighlighted, "#maintenance-runs")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
        key = event.row_key.value
        if key is not None and key != self.highlighted:  # rows re-shown keep the cursor: no new ask
            self.highlighted = key
            self._ask(int(key))

    # -- actions ---------------------------------------------------------------------------------------
    def _chosen(self) -> results.MaintainRunInfo | None:
        run = self.current
        if run is None:
            self.notify("no maintenance run selected", severity="warning")
        return run

    def _decided(self, run: results.MaintainRunInfo) -> None:
        self._show_run(run)
        self._status(f"run {run.id}: {run.state}" + (f" — {run.reason}" if run.reason else ""))
        self.reload()

    def _decide(self, approve: bool) -> None:
        if self.readonly:
            return
        run = self._chosen()
        if run is None:
            return
        verb = "approve" if approve else "reject"
        if run.state != "awaiting_approval":
            self.notify(
                f"run {run.id} is {run.state.replace('_', ' ')}: only a run awaiting approval can be {verb}d",
                severity="warning",
            )
            return
        run_id, model = run.id, run.model
        challenger = version_label(run.challenger)
        if approve:
            question = (
                f"Approve run [b]{run_id}[/b] of [b]{literal(model)}[/b]?\n{challenger} "
                f"({literal(scores(run))}) is promoted and every deployment following the alias rolls out."
            )
        else:
            question = (
                f"Reject run [b]{run_id}[/b] of [b]{literal(model)}[/b]?\n{challenger} stays in the "
                "registry; the alias and deployments stay as they are."
            )

        def reasoned(reason: str | None) -> None:
            if reason is None:
                return

            def ask(text: str) -> None:
                confirm(
                    self,
                    text,
                    lambda: self.call(
                        requests.MaintainDecide(run=run_id, approve=approve, reason=reason),
                        self._decided,
                        success=f"run {run_id} {verb}d",
                    ),
                    yes=verb.capitalize(),
                )

            if not approve:
                ask(question)
                return

            def got_policy(info: results.MaintainPolicyInfo) -> None:
                alias = str(info.policy.get("alias") or "production")

                def followed(following: list[DeploymentInfo]) -> None:
                    ask(
                        f"Approve run [b]{run_id}[/b] of [b]{literal(model)}[/b] ({literal(scores(run))})?\n"
                        f"[b]{literal(alias)}[/b] moves from {version_label(info.champion)} to "
                        f"[b]{challenger}[/b]. " + rollout_text(model, alias, challenger, following)
                    )

                ask_followers(self, model, alias, followed)

            self.call(requests.MaintainPolicyRequest(name=model), got_policy, group="policy")

        title = (
            f"{verb.capitalize()} run [b]{run_id}[/b] of [b]{literal(model)}[/b] ({challenger}, {literal(scores(run))})"
        )
        self.app.push_screen(ReasonDialog(title, verb.capitalize()), reasoned)

    def action_approve(self) -> None:
        self._decide(True)

    def action_reject(self) -> None:
        self._decide(False)

    def action_cancel_run(self) -> None:
        if self.readonly:
            return
        run = self._chosen()
        if run is None:
            return
        if run.state not in ("running", "awaiting_approval"):
            self.notify(
                f"run {run.id} is {run.state.replace('_', ' ')}: there is nothing to cancel", severity="warning"
            )
            return
        run_id, model = run.id, run.model
        what = "its training or evaluation is killed" if run.state == "running" else "its challenger is never promoted"

        def reasoned(reason: str | None) -> None:
            if reason is None:
                return
            confirm(
                self,
                f"Cancel run [b]{run_id}[/b] of [b]{literal(model)}[/b]?\n{what.capitalize()}; the champion stays.",
                lambda: self.call(
                    requests.MaintainCancel(run=run_id, reason=reason),
                    self._decided,
                    success=f"run {run_id} cancelled",
                ),
            )

        self.app.push_screen(
            ReasonDialog(f"Cancel run [b]{run_id}[/b] of [b]{literal(model)}[/b] ({what})", "Cancel run"), reasoned
        )

    def action_run_now(self) -> None:
        if self.readonly:
            return
        run = self._chosen()
        if run is None:
            return
        model = run.model

        def begun(info: results.MaintainRunInfo) -> None:
            self.select = info.id
            self._status(f"run {info.id} of {info.model} started")
            self.reload()

        question = (
            f"Start a maintenance run of [b]{literal(model)}[/b] now?\nIt evaluates the champion, "
            "trains a challenger and gates it by the model's policy."
        )
        confirm(
            self,
            question,
            lambda: self.call(
                requests.MaintainRunNow(name=model),
                begun,
                success=f"maintenance run of {model} started",
            ),
        )

    def action_policy(self) -> None:
        run = self._chosen()
        if run is None:
            return
        self.call(
            requests.MaintainPolicyRequest(name=run.model),
            self._show_policy,
            group="policy",
        )

    def _show_policy(self, info: results.MaintainPolicyInfo) -> None:
        self.app.push_screen(PolicyDialog(info))

    def action_refresh(self) -> None:
        self.reload()
