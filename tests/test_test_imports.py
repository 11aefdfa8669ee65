"""Test modules share code through tests/helpers/ only: none imports another test module or a conftest (a
fixture file's helpers would tie one directory's tests to another's, and pytest imports conftests itself)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _is_test_module(dotted: str) -> bool:
    last = dotted.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def forbidden_imports(source: str) -> list[str]:
    """The modules ``source`` imports that are test modules or conftests (absolute or relative)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            dots = "." * node.level
            names = [dots + a.name for a in node.names] if node.module is None else [dots + node.module]
            found += [name for name in names if _is_test_module(name)]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("tests.") and _is_test_module(a.name)]
    return sorted(set(found))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tests.conftest import DaemonProcess", ["tests.conftest"]),
        ("from .test_app import SIZE", [".test_app"]),
        ("from ..deploy.test_process import cli_json", ["..deploy.test_process"]),
        ("from . import test_app", [".test_app"]),
        ("def f():\n    from .conftest import X", [".conftest"]),
        ("import tests.monitor.test_metrics_e2e", ["tests.monitor.test_metrics_e2e"]),
        ("from tests.helpers.tui import until\nimport pytest", []),
    ],
)
def test_the_check_finds_imports_of_test_modules(source: str, expected: list[str]) -> None:
    assert forbidden_imports(source) == expected


def test_no_test_module_or_conftest_imports_another_test_module() -> None:
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if "data" not in path.relative_to(TESTS).parts and (found := forbidden_imports(path.read_text()))
    }
    assert offenders == {}, "move shared helpers to tests/helpers/ and import them from there"
