"""The TUI against canned answers instead of a daemon: fast Pilot tests of what a screen shows.

:class:`FakeClient` is a :class:`~modeltui.client.DaemonClient` without a socket. It answers each request type
with a canned result of the type the request declares (``request.result``), or fails it with a canned
:class:`ProtocolError`, records every request it was sent, and pushes events to the App's listeners as the
daemon would. :func:`fake_app` starts the real App with it through the App's own seam, the client factory.
The real-daemon tests (tests/tui/test_app.py and the others) stay the proof that the two sides agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon.protocol import frames, requests, results
from daemon.protocol.access import Role
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.events import Event
from modeltui.app import ModelTuiApp
from modeltui.client import DaemonClient, DaemonUnavailable, EventListener, Reply

RequestType = type[requests.BaseRequest[Any]]
Answer = results.Result | ProtocolError | Callable[[requests.BaseRequest[Any]], results.Result]


class FakeClient(DaemonClient):
    """A connected client whose answers are canned per request type (no socket, no daemon)."""

    def __init__(self, *, user: str = "tester", role: Role | None = "admin") -> None:
        # No super().__init__(): there is no connection to read from.
        self.welcome = frames.Welcome(protocol=frames.PROTOCOL_VERSION, daemon_version="0.0.0-fake", user=user,
                                      role=role)
        self.socket_path = Path("/nonexistent/fake.sock")
        self.readonly = False
        self.closed = asyncio.Event()
        self._listeners: list[EventListener] = []
        self._progress: dict[int, Callable[[int, int, str], None]] = {}
        self._answers: dict[RequestType, Answer] = {requests.Subscribe: results.Ack()}
        self.sent: list[requests.BaseRequest[Any]] = []
        """Every request the App sent, in order (on any of its connections)."""
        self.others: list[FakeClient] = []
        """The further connections the App opened while this one was open (a log's follow opens one)."""

    # -- what the test sets up ---------------------------------------------------------------------------
    def answer(self, request_type: RequestType, answer: Answer) -> FakeClient:
        """Answer every ``request_type`` with ``answer``: a result of the type the request declares, an error
        to raise, or a function of the request that makes the result."""
        if isinstance(answer, results.Result) and not isinstance(answer, request_type.result):
            raise TypeError(f"{request_type.__name__} answers {request_type.result.__name__}, "
                            f"not {type(answer).__name__}")
        self._answers[request_type] = answer
        return self

    def another(self) -> FakeClient:
        """A further connection: the same user and answers, its own listeners and its own ``closed``."""
        other = FakeClient(user=self.welcome.user, role=self.welcome.role)
        other._answers, other.sent = self._answers, self.sent
        self.others.append(other)
        return other

    def push(self, event: Event) -> None:
        """Deliver ``event`` to the listeners, as a frame pushed by the daemon would be."""
        self._dispatch_event(event)

    def hang_up(self) -> None:
        """The daemon goes away: the App sees its connection close."""
        self.closed.set()

    def sent_of(self, request_type: type[requests.BaseRequest[Any]]) -> Sequence[requests.BaseRequest[Any]]:
        """The requests of one type the App sent."""
        return [r for r in self.sent if isinstance(r, request_type)]

    # -- what the App calls ------------------------------------------------------------------------------
    async def send(
        self,
        request: requests.BaseRequest[Any],
        *,
        fds: Sequence[int] = (),
        progress: Callable[[int, int, str], None] | None = None,
    ) -> Reply:
        """The canned answer as the daemon's bytes (``call`` then parses them as the real client does)."""
        if self.closed.is_set():
            raise DaemonUnavailable("the connection to the daemon is closed")  # as the real client says
        if self.readonly and request.changes_state:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"{request.op_name} changes state: refused by --readonly")
        self.sent.append(request)
        await asyncio.sleep(0)  # an answer never arrives in the same step as its request
        answer = self._answers.get(type(request))
        if answer is None:
            raise ProtocolError(ErrorCode.INTERNAL, f"the fake client has no answer for {type(request).__name__}")
        if isinstance(answer, ProtocolError):
            raise ProtocolError(answer.code, answer.message, answer.data)
        result = answer if isinstance(answer, results.Result) else answer(request)
        return Reply(result.model_dump_json().encode())

    async def close(self) -> None:
        self.closed.set()


def fake_app(client: FakeClient, *, readonly: bool = False) -> ModelTuiApp:
    """The real App, connected to ``client``; it connects to ``client`` again after a hang-up (ctrl+r), and a
    connection it opens beside the main one (a log's follow) is ``client.another()``."""
    connected = False

    async def connect() -> DaemonClient:
        nonlocal connected
        if connected and not client.closed.is_set():
            return client.another()
        connected = True
        client.closed.clear()
        return client

    return ModelTuiApp(connect, readonly=readonly)
