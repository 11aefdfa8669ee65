"""Roles: what a caller may ask the daemon. Each request class declares one (``role``); the daemon
decides a caller's role from its peer credentials and ``[access]`` (docs/operations.md)."""

from __future__ import annotations

from typing import Literal

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


def allows(role: Role | None, needed: Role) -> bool:
    """``role`` (None: no role at all) is at least ``needed``."""
    return role is not None and ROLES.index(role) >= ROLES.index(needed)
