"""Tables of the deployments views: every deployment, one deployment's fields, its recent events.

State and health are coloured in the palette of :mod:`modeltui.format`; uptime is re-rendered
locally from ``started_at`` (:meth:`DeploymentsTable.tick`), to the minute, so it moves without asking the
daemon and an idle table sends next to nothing to the terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from daemon.protocol.deploy import DeploymentEventInfo, DeploymentInfo

from ..format import DEPLOYMENT_TONE, short, uptime, version_label, when, when_short
from .keyed_table import KeyedTable


def version_text(d: DeploymentInfo) -> str:
    """``v2``, or ``v2 → v3`` while a rollout to v3 is in progress."""
    text = version_label(d.version)
    if d.rollout_to is not None and d.rollout_to != d.version:
        text += f" → v{d.rollout_to}"
    return text


class _ToneTable(KeyedTable):
    def toned_state(self, word: str) -> Text:
        """A deployment state or health word in its colour."""
        return self.toned(word, DEPLOYMENT_TONE)


class DeploymentsTable(_ToneTable):
    """One row per deployment: name, ref, version, state, health, endpoint, uptime, restarts, backend,
    message. The columns a user checks first come first, so they show at 80 columns."""

    COLUMNS = ("name", "ref", "version", "state", "health", "endpoint", "uptime", "restarts", "backend",
               "message")
    # At 80 columns: name, state, health, endpoint, uptime, restarts whole and the message cut to the rest;
    # backend, ref and version hide first (the detail view shows them).
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {
        "endpoint": 1, "uptime": 1, "restarts": 1, "message": 2, "version": 3, "ref": 4, "backend": 5}
    COLUMN_MAX: ClassVar[Mapping[str, int]] = {"endpoint": 16}
    COLUMN_SHORT: ClassVar[Mapping[str, str]] = {"restarts": "rst", "version": "ver"}
    KEEP_END = frozenset({"endpoint"})
    FLEX_COLUMN = "message"

    class DeploymentChosen(Message):
        """The user pressed enter on a deployment."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.items: dict[str, DeploymentInfo] = {}
        """The deployments shown, by name."""

    @property
    def current(self) -> DeploymentInfo | None:
        """The highlighted deployment."""
        key = self.current_key
        return self.items.get(key) if key is not None else None

    def show(self, deployments: Sequence[DeploymentInfo], now: datetime | None = None) -> None:
        """Replace the rows, keeping the cursor on the same deployment."""
        now = now or datetime.now(UTC)
        self.items = {d.name: d for d in deployments}
        self.replace_rows(
            (
                d.name,
                (
                    d.name,
                    d.ref,
                    version_text(d),
                    self.toned_state(d.state),
                    self.toned_state(d.health),
                    d.endpoint or "-",
                    uptime(d.started_at, now),
                    str(d.restarts),
                    d.backend,
                    Text(short(d.message, 60)),  # daemon text: never parsed as markup
                ),
            )
            for d in sorted(deployments, key=lambda d: d.name)
        )

    def tick(self, now: datetime | None = None) -> None:
        """Re-render the uptime column (called on a timer by the screen; no daemon call). Uptime is shown
        to the minute, so most ticks change nothing and repaint nothing; a change repaints its cell only."""
        if self.items:
            self.show(list(self.items.values()), now)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.DeploymentChosen(event.row_key.value))


class DeploymentFieldsTable(_ToneTable):
    """Every field of one deployment, one per row."""

    COLUMNS = ("field", "value")

    def show(self, d: DeploymentInfo, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        options = d.options.model_dump(exclude_none=True)
        pairs: list[tuple[str, str | Text]] = [
            ("name", d.name),
            ("ref", d.ref),
            ("model", d.model),
            ("version", version_text(d)),
            ("state", self.toned_state(d.state)),
            ("desired", d.desired),
            ("health", self.toned_state(d.health)),
            ("endpoint", d.endpoint or "-"),
            ("port", str(d.port)),
            ("backend", d.backend),
            ("uptime", uptime(d.started_at, now)),
            ("started at", when(d.started_at)),
            ("restarts", str(d.restarts)),
            ("message", d.message or "-"),
            ("instance", f"{d.instance.id} ({d.instance.key})" if d.instance else "-"),
            ("admin url", d.instance.admin_url if d.instance else "-"),
            ("image", d.image or "-"),
            ("env", ", ".join(f"{k}={v}" for k, v in sorted(d.env.items())) or "-"),
            ("options", ", ".join(f"{k}={v}" for k, v in options.items()) or "-"),
            ("created at", when(d.created_at)),
            ("updated at", when(d.updated_at)),
        ]
        self.replace_rows((k, (k, v if isinstance(v, Text) else Text(v))) for k, v in pairs)


class DeploymentEventsTable(KeyedTable):
    """A deployment's recent events, as the daemon returns them."""

    COLUMNS = ("at", "kind", "version", "message")
    COLUMN_PRIORITY: ClassVar[Mapping[str, int]] = {"version": 1, "message": 2}
    FLEX_COLUMN = "message"

    def show(self, events: Sequence[DeploymentEventInfo]) -> None:
        self.replace_rows(
            (str(i), (when_short(e.at), e.kind, version_label(e.version),
                      Text(short(e.message, 200))))
            for i, e in enumerate(events)
        )
