"""What the command line completes and the palette lists, read through the App and kept a few seconds.

The App hands an :class:`Asker` (its one-call method) in: nothing here holds a client. Every read is
bounded (at most :data:`LIMIT` objects) and gives up after :data:`WAIT_SECONDS`, answering with what it has,
so a slow or absent daemon never holds the palette or the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from daemon.protocol import requests, results
from daemon.protocol.deploy import DeploymentInfo
from daemon.protocol.errors import ProtocolError

R = TypeVar("R", bound=results.Result)

#: Objects of each kind one read returns at most.
LIMIT = 20
#: Letters of a palette query sent to the daemon at most (a pattern is at most 256 characters).
PATTERN_LETTERS = 60
#: A read this recent is answered from memory.
FRESH_SECONDS = 3.0
#: A read that takes longer is abandoned (the last answer stays).
WAIT_SECONDS = 2.0


def subsequence(query: str) -> str:
    """The daemon's models.list ``pattern`` matching a cell that holds ``query``'s letters in this order (what
    the palette's fuzzy matcher then ranks): lower case, so the daemon's smart case ignores case, as the
    palette does; spaces left out; ``!`` escaped (first it would invert); long enough for the request."""
    letters = [re.escape(c) if c != "!" else "\\!" for c in query.lower() if not c.isspace()]
    return ".*".join(letters[:PATTERN_LETTERS])


class Asker(Protocol):
    """The App's call for its own layer: the result, or None when not connected."""

    async def __call__(self, request: requests.BaseRequest[R]) -> R | None: ...


class KnownNames:
    """Deployments, models and maintenance runs the daemon has, and the contexts the App knows.

    One read of each kind at a time: the palette cancels its search on every keystroke, so a read runs as a
    task of its own that every asker shares (shielded), and what it found stays until it is stale."""

    def __init__(self, ask: Asker, contexts: Callable[[], Sequence[str]]) -> None:
        self.ask = ask
        self.contexts = contexts
        self.deployment_list: list[DeploymentInfo] = []
        self.run_list: list[results.MaintainRunInfo] = []
        self._models: dict[str, list[results.ModelSummary]] = {}
        self._reads: dict[str, asyncio.Future[Any]] = {}
        self._read_at: dict[str, float] = {}

    def known(self, kind: str) -> list[str]:
        """Names of ``kind`` (``deployments``, ``models``, ``contexts``, ``hosts``) known now, without asking."""
        if kind == "deployments":
            return [d.name for d in self.deployment_list]
        if kind == "models":
            return [m.name for m in self._models.get("", [])]
        if kind in ("contexts", "hosts"):
            return list(self.contexts())
        return []

    async def refresh(self) -> None:
        """Read what completion offers (deployments and models) unless read a moment ago."""
        await asyncio.gather(self.deployments(), self.models())

    async def deployments(self) -> list[DeploymentInfo]:
        found = await self._shared("deployments", requests.ListDeployments())
        if found is not None:
            self.deployment_list = found.items
        return self.deployment_list

    async def models(self, query: str = "") -> list[results.ModelSummary]:
        """Models with the letters of ``query`` in order in one of their cells (the palette's fuzzy match,
        asked of the whole registry: "brcn" finds breast-cancer among 10,000), at most :data:`LIMIT`."""
        pattern = subsequence(query)
        found = await self._shared(f"models:{query}", requests.ListModels(pattern=pattern or None, limit=LIMIT))
        if found is not None:
            if len(self._models) > 64:  # what one palette session types, not more
                self._models.clear()
            self._models[query] = found.items
        return self._models.get(query, [])

    async def runs(self) -> list[results.MaintainRunInfo]:
        found = await self._shared("runs", requests.MaintainRuns(limit=LIMIT))
        if found is not None:
            self.run_list = found.items
        return self.run_list

    async def _shared(self, key: str, request: requests.BaseRequest[R]) -> R | None:
        """The read of ``key`` running now or done less than :data:`FRESH_SECONDS` ago, else a new one."""
        loop = asyncio.get_running_loop()
        read = self._reads.get(key)
        if read is None or (read.done() and loop.time() - self._read_at.get(key, 0.0) >= FRESH_SECONDS):
            if len(self._reads) > 64:
                self._reads = {k: r for k, r in self._reads.items() if not r.done()}
            read = self._reads[key] = loop.create_task(self._read(request))
            read.add_done_callback(lambda _done: self._read_at.__setitem__(key, loop.time()))
        found: R | None = await asyncio.shield(read)
        return found

    async def _read(self, request: requests.BaseRequest[R]) -> R | None:
        """One bounded read; an error or a slow daemon answers None (the header already shows a lost daemon)."""
        with contextlib.suppress(ProtocolError, TimeoutError):
            return await asyncio.wait_for(self.ask(request), WAIT_SECONDS)
        return None
