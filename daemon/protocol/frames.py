"""Frames: newline-delimited JSON objects on one persistent Unix-socket connection.

Client → daemon: ``hello`` first, then ``request``. Daemon → client: ``welcome``, ``response``, ``error`` and
``event``. Request ids let responses and pushed events share the connection.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .access import Role
from .errors import ErrorCode
from .events import Event
from .requests import Request

PROTOCOL_VERSION = 1
#: Largest frame either side accepts, newline included. Artifact bytes never ride in JSON.
MAX_FRAME_BYTES = 8 * 1024 * 1024


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Hello(_Frame):
    type: Literal["hello"] = "hello"
    protocol: int
    client: Annotated[str, Field(max_length=128)]


class Welcome(_Frame):
    type: Literal["welcome"] = "welcome"
    protocol: int
    daemon_version: str
    user: str
    role: Role | None = None
    """What this connection may do (docs/operations.md); None: nothing (every request is FORBIDDEN)."""


class RequestFrame(_Frame):
    type: Literal["request"] = "request"
    id: Annotated[int, Field(ge=0, lt=2**53)]
    request: Request


class ResponseFrame(_Frame):
    type: Literal["response"] = "response"
    id: int
    result: dict[str, Any]


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    id: int | None
    code: ErrorCode
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class EventFrame(_Frame):
    type: Literal["event"] = "event"
    event: Event


ClientFrame = Annotated[Hello | RequestFrame, Field(discriminator="type")]
ServerFrame = Annotated[Welcome | ResponseFrame | ErrorFrame | EventFrame, Field(discriminator="type")]

CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
SERVER_FRAME: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)


def encode(frame: _Frame) -> bytes:
    """One frame as bytes, newline-terminated."""
    return frame.model_dump_json(exclude_none=False).encode() + b"\n"


#: Responses always start like this, so a client can find the id and the result's bytes without parsing
#: the whole frame twice (``RESPONSE_HEAD``); any other valid JSON response is still accepted.
_RESPONSE_PREFIX = b'{"type":"response","id":'
RESPONSE_HEAD = re.compile(rb'\{"type":"response","id":(\d{1,16}),"result":')


def encode_response(req_id: int, result_json: bytes) -> bytes:
    """A response frame around an already-serialised result (a JSON object)."""
    return b'%s%d,"result":%s}\n' % (_RESPONSE_PREFIX, req_id, result_json)
