"""The one-line header of every screen: where you are, which daemon, whether it is reachable, what needs you.

It holds no state of its own: the App keeps a :class:`ShellStatus` in its ``status`` reactive and every
header (one per screen) watches it, so a disconnection shows on whatever screen is up. The breadcrumb is
read from the screen stack under the header's own screen. At 80 columns the counts go first, then the
middle of the breadcrumb, then the end of the reason: the connection state and READ-ONLY always stay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.color import Color, ColorParseError
from textual.screen import ModalScreen, Screen
from textual.widget import Widget

from ..production import default_color, is_production

SEPARATOR = " › "

#: What the header says for each connection state (disconnected adds the reason and the retry).
STATE_TEXT = {
    "connecting": "connecting…",
    "connected": "connected",
    "reconnecting": "reconnecting…",
    "disconnected": "DISCONNECTED",
}


@dataclass(frozen=True)
class ShellStatus:
    """Everything the header shows that is not the breadcrumb (the App replaces it whole on each change)."""

    context: str = "local"
    color: str | None = None
    """The context's colour cue (a Textual colour); a red one also puts a PROD label first."""
    readonly: bool = False
    connection: str = "connecting"
    reason: str = ""
    """Why the connection is down (shown with the disconnected state)."""
    retry_in: int | None = None
    """Seconds until the next automatic reconnection try (while disconnected)."""
    not_running: int = 0
    firing: int = 0
    awaiting: int = 0

    @property
    def production(self) -> bool:
        """A production context (named prod* or coloured red): the header says PROD, whatever the terminal's
        colours."""
        return is_production(self.context, self.color)

    def state_text(self) -> str:
        text = STATE_TEXT.get(self.connection, self.connection)
        if self.connection == "disconnected":
            if self.retry_in is not None:
                text += f", retry in {self.retry_in}s (ctrl+r)"
            if self.reason:
                text += f": {self.reason}"
        return text

    def counts_text(self) -> str:
        parts = []
        if self.not_running:
            parts.append(f"{self.not_running} not running")
        if self.firing:
            parts.append(f"{self.firing} firing")
        if self.awaiting:
            parts.append(f"{self.awaiting} to approve")
        return " · ".join(parts)


def effective_color(context: str, color: str | None) -> str | None:
    """The context's colour, or red for a context named prod* that sets none."""
    return color or default_color(context)


def crumbs(stack: Sequence[Screen[Any]], upto: Screen[Any],
           top_level: Callable[[Screen[Any]], bool] = lambda _s: False) -> list[str]:
    """The breadcrumb parts of the screens from the bottom of ``stack`` to ``upto`` (dialogs and Textual's
    default screen left out; a top-level view starts the trail afresh, as it replaced the views under it).
    A version under its model says ``v3`` rather than ``iris:3``."""
    parts: list[str] = []
    for screen in stack:
        if isinstance(screen, ModalScreen) or type(screen) is Screen:
            if screen is upto:
                break
            continue
        if top_level(screen):
            parts = []
        crumb = str(getattr(screen, "crumb", None) or screen.sub_title
                    or type(screen).__name__.removesuffix("Screen").lower())
        if parts and crumb.startswith(parts[-1] + ":"):
            crumb = "v" + crumb[len(parts[-1]) + 1:]
        parts.append(crumb)
        if screen is upto:
            break
    return parts


class StatusHeader(Widget):
    """Context (with its colour cue), breadcrumb, counts, connection state and read-only marker."""

    DEFAULT_CSS = """
    StatusHeader {
        dock: top;
        height: 1;
        width: 1fr;
        background: $panel;
        color: $foreground;
    }
    StatusHeader.-colored {
        color: auto 90%;
    }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "status", self._changed, init=False)
        self.watch(self.screen, "sub_title", self._changed, init=False)
        self._changed()

    @property
    def status(self) -> ShellStatus:
        status = getattr(self.app, "status", None)
        return status if isinstance(status, ShellStatus) else ShellStatus()

    def _changed(self, *_args: object) -> None:
        status = self.status
        color = effective_color(status.context, status.color)
        parsed: Color | None = None
        if color:
            try:
                parsed = Color.parse(color)
            except ColorParseError:
                parsed = None
        if parsed is None:
            self.styles.clear_rule("background")
        else:
            self.styles.background = parsed
        self.set_class(parsed is not None, "-colored")
        self.set_class(status.production, "-production")
        self.refresh()

    def breadcrumb(self) -> list[str]:
        """Where the user is: the context, then each view and drill-down down to this header's screen."""
        top_level = getattr(self.app, "is_top_level", None)
        return [self.status.context, *crumbs(self.app.screen_stack, self.screen,
                                             top_level if callable(top_level) else lambda _s: False)]

    def text(self, width: int) -> str:
        """The header as plain text at ``width`` columns (what :meth:`render` styles)."""
        return self._fit(width).plain

    def render(self) -> Text:
        return self._fit(self.size.width or 80)

    def _fit(self, width: int) -> Text:
        status = self.status
        label = " PROD " if status.production else ""
        trail = self.breadcrumb()
        state = status.state_text()
        counts = status.counts_text()
        marker = "READ-ONLY" if status.readonly else ""

        def build(trail_text: str, counts_text: str, state_text: str) -> Text:
            text = Text(no_wrap=True, overflow="ellipsis")
            if label:
                text.append(label, style="bold reverse")
                text.append(" ")
            else:
                text.append(" ")
            text.append(trail_text, style="bold")
            right = Text()
            if counts_text:
                right.append(counts_text, style="bold")
                right.append("  ")
            down = status.connection != "connected"
            right.append(state_text, style="bold reverse" if status.connection == "disconnected" else
                         ("italic" if down else "dim"))
            if marker:
                right.append("  ")
                right.append(marker, style="bold reverse")
            right.append(" ")
            gap = max(1, width - text.cell_len - right.cell_len)
            text.append(" " * gap)
            text.append_text(right)
            return text

        full = SEPARATOR.join(trail)
        fixed = len(label) + 1 + len(state) + (len(marker) + 2 if marker else 0) + 3  # 2 between, 1 at the end
        if fixed + len(full) + len(counts) + 2 <= width:
            return build(full, counts, state)
        # Counts go first, then the middle of the breadcrumb, then the end of the state's reason.
        if fixed + len(full) > width and len(trail) > 2:
            full = SEPARATOR.join([trail[0], "…", trail[-1]])
        room = width - fixed - len(full) + len(state)
        if len(state) > room > 8:
            state = state[: room - 1] + "…"
        return build(full, "", state)
