"""Error codes shared by the daemon and its clients; the CLI maps each to an exit code."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Why a request failed. Stable strings: scripts match on them."""

    BAD_FRAME = "BAD_FRAME"
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    PROTOCOL_MISMATCH = "PROTOCOL_MISMATCH"
    UNKNOWN_OP = "UNKNOWN_OP"
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    FORBIDDEN = "FORBIDDEN"
    UNAVAILABLE = "UNAVAILABLE"
    INTEGRITY = "INTEGRITY"
    INTERNAL = "INTERNAL"


#: Exit code of the CLI for each error code (documented in docs/cli.md).
EXIT_CODES: dict[ErrorCode, int] = {
    ErrorCode.BAD_FRAME: 8,
    ErrorCode.FRAME_TOO_LARGE: 8,
    ErrorCode.PROTOCOL_MISMATCH: 8,
    ErrorCode.UNKNOWN_OP: 8,
    ErrorCode.INVALID: 4,
    ErrorCode.NOT_FOUND: 3,
    ErrorCode.CONFLICT: 5,
    ErrorCode.FORBIDDEN: 6,
    ErrorCode.UNAVAILABLE: 7,
    ErrorCode.INTEGRITY: 9,
    ErrorCode.INTERNAL: 1,
}


class ProtocolError(Exception):
    """An error with a code: raised by the daemon's services, re-raised by the client from an error frame."""

    def __init__(self, code: ErrorCode, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or {}

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


def not_found(message: str, **data: Any) -> ProtocolError:
    return ProtocolError(ErrorCode.NOT_FOUND, message, data)


def invalid(message: str, **data: Any) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID, message, data)


def conflict(message: str, **data: Any) -> ProtocolError:
    return ProtocolError(ErrorCode.CONFLICT, message, data)
