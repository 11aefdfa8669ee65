"""What the command line completes and the palette lists (KnownNames) with a counting stand-in for the App's
call: a palette search cancelled by the next keystroke does not lose the read it started, reads are shared."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from daemon.protocol import requests, results
from daemon.protocol.errors import ErrorCode, ProtocolError
from modeltui.commands import KnownNames


def model(name: str) -> results.ModelSummary:
    now = datetime.now(UTC)
    return results.ModelSummary(name=name, description="", created_at=now, updated_at=now, versions=1, latest=1,
                                aliases={})


class Daemon:
    """Answers ListModels slowly enough for a caller to be cancelled meanwhile; counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[requests.BaseRequest[Any]] = []
        self.fail = False

    async def __call__(self, request: requests.BaseRequest[Any]) -> Any:
        self.asked.append(request)
        await asyncio.sleep(0.05)
        if self.fail:
            raise ProtocolError(ErrorCode.INTERNAL, "boom")
        assert isinstance(request, requests.ListModels)
        return results.ModelList(items=[model("iris")], total=1)


async def test_reads_are_shared_and_survive_a_cancelled_search() -> None:
    daemon = Daemon()
    names = KnownNames(daemon, lambda: ["local", "prod"])
    first = asyncio.ensure_future(names.models("ir"))
    await asyncio.sleep(0.01)
    first.cancel()  # the next keystroke
    assert [m.name for m in await names.models("ir")] == ["iris"]
    assert len(daemon.asked) == 1
    assert [m.name for m in await names.models("ir")] == ["iris"]  # fresh: not asked again
    assert len(daemon.asked) == 1
    both = await asyncio.gather(names.models(), names.models())
    assert both[0] == both[1]
    assert len(daemon.asked) == 2
    assert names.known("models") == ["iris"]
    assert names.known("contexts") == ["local", "prod"]


async def test_an_error_answers_what_was_known() -> None:
    daemon = Daemon()
    daemon.fail = True
    names = KnownNames(daemon, list)
    assert await names.models("x") == []
    assert names.known("deployments") == []


async def test_a_model_search_asks_the_whole_registry_for_the_letters_in_order() -> None:
    daemon = Daemon()
    names = KnownNames(daemon, list)
    await names.models("Br c!")
    await names.models()
    asked = [r for r in daemon.asked if isinstance(r, requests.ListModels)]
    assert [(r.pattern, r.query, r.limit) for r in asked] == [("b.*r.*c.*\\!", None, 20), (None, None, 20)]
