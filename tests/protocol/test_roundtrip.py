"""Every request, result, event and frame survives JSON both ways (tests/test_dispatch.py: one handler each)."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel, ValidationError

from daemon.protocol import events, frames
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode
from tests.helpers.protocol_samples import EVENTS, REQUESTS, RESULTS


def _union_members(annotated: object) -> set[type]:
    union = typing.get_args(annotated)[0]
    return set(typing.get_args(union))


def _request_classes(base: type = q.BaseRequest) -> set[type]:
    """Every class of the protocol made from BaseRequest that names an ``op`` (a request a client can send)."""
    found: set[type] = set()
    for sub in base.__subclasses__():
        if "op" in sub.model_fields and sub.__module__ == q.__name__:
            found.add(sub)
        found |= _request_classes(sub)
    return found


def test_every_request_class_is_a_member_of_the_request_union() -> None:
    """A request class left out of ``Request`` could never be parsed off the wire."""
    left_out = sorted(t.__name__ for t in _request_classes() - _union_members(q.Request))
    assert left_out == []


def test_samples_cover_every_request_result_and_event() -> None:
    assert {type(x) for x in REQUESTS} == set(q.REQUEST_TYPES)
    assert {type(x) for x in RESULTS} == {t.result for t in q.REQUEST_TYPES}
    assert {type(x) for x in EVENTS} == _union_members(events.Event)


@pytest.mark.parametrize("request_obj", REQUESTS, ids=lambda x: type(x).__name__)
def test_request_frames_roundtrip(request_obj: BaseModel) -> None:
    frame = frames.RequestFrame(id=42, request=request_obj)  # type: ignore[arg-type]
    back = frames.CLIENT_FRAME.validate_json(frames.encode(frame))
    assert back == frame


@pytest.mark.parametrize("result", RESULTS, ids=lambda x: type(x).__name__)
def test_results_roundtrip_through_response_frames(result: r.Result) -> None:
    frame = frames.ResponseFrame(id=1, result=result.model_dump(mode="json"))
    back = frames.SERVER_FRAME.validate_json(frames.encode(frame))
    assert isinstance(back, frames.ResponseFrame)
    assert type(result).model_validate(back.result) == result


@pytest.mark.parametrize("event", EVENTS, ids=lambda x: type(x).__name__)
def test_event_frames_roundtrip(event: BaseModel) -> None:
    frame = frames.EventFrame(event=event)  # type: ignore[arg-type]
    assert frames.SERVER_FRAME.validate_json(frames.encode(frame)) == frame


def test_other_frames_roundtrip() -> None:
    for frame in (
        frames.Hello(protocol=1, client="t"),
        frames.Welcome(protocol=1, daemon_version="0.1", user="alice"),
        frames.Welcome(protocol=1, daemon_version="0.1", user="alice", role="operator"),
        frames.ErrorFrame(id=None, code=ErrorCode.NOT_FOUND, message="no", data={"x": 1}),
    ):
        adapter = frames.CLIENT_FRAME if isinstance(frame, frames.Hello) else frames.SERVER_FRAME
        assert adapter.validate_json(frames.encode(frame)) == frame


@pytest.mark.parametrize(
    "bad",
    [
        {"op": "versions.show", "ref": "../etc"},
        {"op": "versions.show", "ref": "a/b"},
        {"op": "versions.show", "ref": "a\x00b"},
        {"op": "versions.show", "ref": "a\x1b[31m"},
        {"op": "versions.show", "ref": "x" * 10_000},
        {"op": "versions.show", "ref": "m:0"},
        {"op": "versions.log", "name": "ok", "limit": 0},
        {"op": "versions.log", "name": "ok", "extra": 1},
        {"op": "aliases.set", "name": "m", "alias": "Prod", "version": 1},
        {"op": "aliases.set", "name": "m", "alias": "latest", "version": 1},
        {"op": "objects.upload", "files": [{"path": "../x", "size": 1}]},
        {"op": "objects.upload", "files": [{"path": "/etc/passwd", "size": 1}]},
        {"op": "versions.push", "files": [{"path": "a", "sha256": "zz", "size": 1}]},
        {"op": "versions.tag", "ref": "m:1", "set": {"k": "line\nbreak"}},
        {"op": "models.describe", "name": "m", "description": "bell\x07"},
        {"op": "alerts.add", "deployment": "d", "rule": "f2 < 0.85"},
        {"op": "alerts.add", "deployment": "d", "rule": "f1 < 0.85", "name": "bad name"},
        {"op": "subscribe", "topics": ["alarms"]},
    ],
)
def test_bad_requests_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        q.REQUEST_ADAPTER.validate_python(bad)
