"""Every number a request carries fits SQLite's 64-bit INTEGER, and every time converts to UTC: a value out
of range is refused by validation (INVALID naming the field), never passed on to the database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from daemon.protocol import requests as q
from daemon.protocol.values import INT64_MAX, INT64_MIN

TOO_BIG = INT64_MAX + 1


def integer_fields(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``"type": "integer"`` node of a JSON schema, with where it sits."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            yield where, node
        for key, value in node.items():
            yield from integer_fields(value, f"{where}.{key}" if where else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from integer_fields(value, f"{where}[{i}]")


def test_every_integer_field_of_every_request_is_bounded_to_64_bits() -> None:
    schema = q.REQUEST_ADAPTER.json_schema()
    found = list(integer_fields(schema))
    assert len(found) > 20  # the walk reaches the requests' fields (and their nested models)
    unbounded = [
        where
        for where, node in found
        if node.get("maximum", node.get("exclusiveMaximum", TOO_BIG)) > INT64_MAX
        or node.get("minimum", node.get("exclusiveMinimum", INT64_MIN - 1)) < INT64_MIN
    ]
    assert unbounded == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"op": "models.list", "offset": TOO_BIG}, "offset"),
        ({"op": "models.list", "offset": -TOO_BIG - 1}, "offset"),
        ({"op": "aliases.set", "name": "m", "alias": "prod", "version": TOO_BIG}, "version"),
        ({"op": "aliases.set", "name": "m", "alias": "prod", "version": INT64_MIN - 1}, "version"),
        ({"op": "maintain.show", "run": TOO_BIG}, "run"),
        ({"op": "store.gc", "grace_seconds": TOO_BIG}, "grace_seconds"),
        ({"op": "versions.log", "name": "m", "offset": TOO_BIG}, "offset"),
        ({"op": "objects.upload", "files": [{"path": "a", "size": TOO_BIG}]}, "size"),
    ],
)
def test_out_of_range_integers_are_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        q.REQUEST_ADAPTER.validate_python(body)
    assert field in [str(p) for e in caught.value.errors() for p in e["loc"]]


def test_the_largest_64_bit_integer_is_still_accepted() -> None:
    req = q.REQUEST_ADAPTER.validate_python({"op": "models.list", "offset": INT64_MAX})
    assert isinstance(req, q.ListModels)
    assert req.offset == INT64_MAX


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_time_outside_years_1_to_9999_in_utc_is_refused(at: str) -> None:
    with pytest.raises(ValidationError, match="outside the years 1-9999"):
        q.REQUEST_ADAPTER.validate_python({"op": "aliases.history", "name": "m", "at": at})
    with pytest.raises(ValidationError, match="outside the years 1-9999"):
        q.REQUEST_ADAPTER.validate_python({"op": "audit.list", "since": at})


def test_times_are_normalised_to_utc() -> None:
    req = q.REQUEST_ADAPTER.validate_python({"op": "aliases.history", "name": "m", "at": "2026-01-01T14:00:00+14:00"})
    assert isinstance(req, q.AliasHistoryRequest)
    assert req.at is not None
    assert req.at.isoformat() == "2026-01-01T00:00:00+00:00"
    naive = q.REQUEST_ADAPTER.validate_python({"op": "audit.list", "since": "2026-01-01T00:00:00"})
    assert isinstance(naive, q.AuditRequest)
    assert naive.since is not None
    assert naive.since.utcoffset() is not None
