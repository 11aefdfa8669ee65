"""The base of every registry view: how a screen asks the App for data, and how it is told to refresh.

Screens never hold a client. They post :class:`RegistryScreen.Call` messages; the App sends the request in a
worker and calls ``reply`` with the typed result while the screen is still mounted. A screen that shows a
deployment's log posts :class:`RegistryScreen.Follow`: the App follows it over a connection of its own,
which lives exactly as long as the screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from textual.binding import Binding, BindingType
from textual.events import ScreenResume, ScreenSuspend
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer

from daemon.protocol import requests, results
from daemon.protocol.errors import ProtocolError
from daemon.protocol.events import DeploymentEvent, RegistryEvent

from ..widgets.keyed_table import KeyedTable

R = TypeVar("R", bound=results.Result)


class TuiHost(Protocol):
    """What screens may know about the App (kept as a protocol so screens never import the App)."""

    readonly: bool


class ScreenRequest(Message, Generic[R]):
    """What a screen asks the App to send for it (a :class:`RegistryScreen.Call` to its daemon, or the hosts
    view's fan-out to every daemon): the request, the screen that gets the answer while it is mounted, the
    group of its calls and the context it was posted on."""

    def __init__(self, screen: RegistryScreen, request: requests.BaseRequest[R], *, group: str | None = None) -> None:
        super().__init__()
        self.screen = screen
        self.request = request
        self.group = group
        """The screen's calls of one group: each kind of request says what it does with them."""
        host = screen.app
        self.context: tuple[int, str] = (getattr(host, "context_epoch", 0),
                                         str(getattr(getattr(host, "context", None), "name", "")))
        """The App's context (switch count, name) when posted: the App never sends it to another one."""


class RegistryScreen(Screen[None]):
    """A view of registry data that can be re-read on demand and on live registry events."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    class Call(ScreenRequest[R]):
        """Ask the App to send ``request`` to the daemon and hand its result to ``reply``; calls of one screen
        in the same group cancel each other (the newest wins)."""

        def __init__(
            self,
            screen: RegistryScreen,
            request: requests.BaseRequest[R],
            reply: Callable[[R], None] | None = None,
            *,
            group: str | None = None,
            success: str | None = None,
            progress: Callable[[int, int, str], None] | None = None,
            failed: Callable[[ProtocolError], None] | None = None,
        ) -> None:
            super().__init__(screen, request, group=group)
            self.reply = reply
            self.success = success
            """Notification shown when the call succeeds (for actions)."""
            self.progress = progress
            """Called with (done, total, text) for each progress event of the request while it runs."""
            self.failed = failed
            """Told the daemon's error instead of the App's notification (the screen shows it where it belongs)."""

    class Follow(Message):
        """Ask the App to follow a deployment's log (its last ``tail`` lines, then new ones as they come)
        over a dedicated connection, until this screen is removed. ``lines`` gets each batch; ``ended`` is
        told once why the stream stopped."""

        def __init__(
            self,
            screen: RegistryScreen,
            deployment: str,
            lines: Callable[[list[str]], None],
            ended: Callable[[str], None],
            *,
            tail: int = 200,
        ) -> None:
            super().__init__()
            self.screen = screen
            self.deployment = deployment
            self.lines = lines
            self.ended = ended
            self.tail = tail

    @property
    def readonly(self) -> bool:
        """True when the App was started read-only: actions that change the registry are hidden."""
        return bool(cast(TuiHost, self.app).readonly)

    def call(
        self,
        request: requests.BaseRequest[R],
        reply: Callable[[R], None] | None = None,
        *,
        group: str | None = None,
        success: str | None = None,
        progress: Callable[[int, int, str], None] | None = None,
        failed: Callable[[ProtocolError], None] | None = None,
    ) -> None:
        """Post a :class:`Call` (to the App)."""
        self.post_message(self.Call(self, request, reply, group=group, success=success,
                                    progress=progress, failed=failed))

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Re-read everything the screen shows (subclasses post their Calls here)."""

    def wants(self, events: Sequence[RegistryEvent]) -> bool:
        """Whether any of these registry events may change what this screen shows."""
        return True

    def deployments_changed(self, events: Sequence[DeploymentEvent]) -> None:
        """Deployment events arrived (debounced like registry events); views of deployments re-read here."""

    def context_changed(self, name: str) -> None:
        """The App switched to the context ``name`` (still connecting): forget what came from the other daemon,
        so none of it shows under the new context's header. By default every keyed table is emptied; the
        reload follows once the new context answers."""
        for table in self.query(KeyedTable):
            table.replace_rows([])

    def apply_filter(self, text: str, *, state: str | None = None, host: str | None = None) -> None:
        """Show only what matches (``:deploy /fraud state=crashloop @host-b``): top-level views override it."""

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()


class PollingScreen(RegistryScreen):
    """A view that also asks again on a timer (what it shows has no events of its own): every
    ``POLL_SECONDS`` the App calls :meth:`poll` while the screen is shown. The timer pauses while another
    screen covers it, and coming back asks at once, unless no answer was shown yet (the first ask is
    on_mount's). Subclasses count their answers in ``answers``."""

    POLL_SECONDS: ClassVar[float] = 2.0

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0
        """How many answers were shown (for tests and the first resume)."""
        self.timer: Timer | None = None

    def on_mount(self) -> None:
        self.timer = self.set_interval(self.POLL_SECONDS, self.poll)
        super().on_mount()

    def poll(self) -> None:
        """One tick of the timer: re-read (subclasses may ask less)."""
        self.reload()

    def on_screen_suspend(self, _event: ScreenSuspend) -> None:
        if self.timer is not None:
            self.timer.pause()

    def on_screen_resume(self, _event: ScreenResume) -> None:
        if self.timer is not None:
            self.timer.resume()
        if self.answers:
            self.reload()


AnyCall = RegistryScreen.Call[Any]
