"""A test never skips itself: a missing service or privilege goes through ``tests/helpers/prerequisites.need``,
which skips on a developer's machine but fails in CI (``MODELTUI_REQUIRE_SERVICES=1``), so CI cannot go green
with tests that did not run. A dependency of the project (the docker SDK, …) is imported, not
``importorskip``-ed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ALLOWED = TESTS / "helpers" / "prerequisites.py"
SKIPS = {"skip", "importorskip", "skipif", "xfail"}


def self_skips(source: str) -> list[str]:
    """``pytest.skip(…)``, ``pytest.importorskip(…)``, ``pytest.mark.skip``/``skipif``/``xfail`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in SKIPS:
            base = node.value
            if isinstance(base, ast.Attribute) and base.attr == "mark":
                base = base.value
            if isinstance(base, ast.Name) and base.id == "pytest":
                found.append(f"line {node.lineno}: pytest.{node.attr}")
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('pytest.skip("no docker0")', ["line 1: pytest.skip"]),
        ('docker = pytest.importorskip("docker")', ["line 1: pytest.importorskip"]),
        ("@pytest.mark.skipif(True, reason='x')\ndef test_x(): pass", ["line 1: pytest.skipif"]),
        ('need(ok, "no docker0")', []),
    ],
)
def test_the_check_finds_self_skips(source: str, expected: list[str]) -> None:
    assert self_skips(source) == expected


def test_no_test_skips_itself_except_through_need() -> None:
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if path != ALLOWED
        and path != Path(__file__).resolve()
        and "data" not in path.relative_to(TESTS).parts
        and (found := self_skips(path.read_text()))
    }
    assert offenders == {}, "use tests.helpers.prerequisites.need (it fails in CI when the service is required)"
