"""The wire contract between modeltuid and its clients: frames, requests, results, events, error codes.

Standard library and pydantic only: the TUI and CLI import this package and nothing else from ``daemon``.
"""

from . import events, frames, requests, results
from .errors import EXIT_CODES, ErrorCode, ProtocolError
from .frames import MAX_FRAME_BYTES, PROTOCOL_VERSION
from .names import Ref, parse_ref

__all__ = [
    "EXIT_CODES",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "ProtocolError",
    "Ref",
    "events",
    "frames",
    "parse_ref",
    "requests",
    "results",
]
