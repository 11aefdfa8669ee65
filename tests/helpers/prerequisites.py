"""Tests that need a service or a privilege skip without it, or fail when CI says it must be there."""

from __future__ import annotations

import os

import pytest

#: Set by CI: a test that needs a service or privilege fails instead of skipping when it is missing.
REQUIRE_SERVICES = os.environ.get("MODELTUI_REQUIRE_SERVICES") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing, or fail when CI says every prerequisite must be there."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required but missing: {reason}")
    pytest.skip(reason)
