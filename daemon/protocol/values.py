"""Numbers and times a request may carry: only what the daemon's storage can hold.

SQLite stores 64-bit integers and Python's ``datetime`` stops at years 1 and 9999; a value outside either
used to travel as far as the database and come back as an internal error. Each request field uses these
types instead, so such a value is refused as ``INVALID`` naming the field (a test walks every request's
schema for an unbounded integer).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

#: SQLite's INTEGER range.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: Counts, offsets and sizes (>= 0).
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
#: Version numbers and row ids (>= 1).
Ordinal = Annotated[int, Field(ge=1, le=INT64_MAX)]


def in_utc(value: datetime) -> datetime:
    """The moment in UTC (a naive time is taken as UTC). Refuses a time whose UTC equivalent falls outside
    years 1-9999, such as ``0001-01-01T00:00:00+14:00``."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside the years 1-9999 once converted to UTC") from None


#: A point in time, normalised to UTC.
UtcTime = Annotated[datetime, AfterValidator(in_utc)]
