"""Who may do what: a caller's role from its peer credentials (SO_PEERCRED) and ``[access]``.

Reaching the socket at all is decided by the file's mode: 0600 in user mode (only the owner), 0660 and the
service group in system mode. Then each request type needs a role (its class's ``role``):
the daemon's own user and root are admin; anyone else gets the highest role an ``[access]`` entry gives them
— their user name, ``@group`` for a group they are in (their supplementary groups as the kernel has them for
the connecting process, read from ``/proc/PID/status``, or the group database when that is not readable), or
``*`` — and no role at all when nothing matches.
"""

from __future__ import annotations

import grp
import logging
import os
from collections.abc import Iterable
from functools import lru_cache

from daemon.protocol.access import ROLES, Role
from daemon.settings import AccessSection

log = logging.getLogger("modeltuid.access")


@lru_cache(maxsize=1024)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid:{gid}"


def caller_gids(pid: int, uid: int, gid: int, user: str) -> set[int]:
    """The connecting process's groups: its primary group and the supplementary ones. Blocking (NSS)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Groups:"):
                    return {gid, *(int(g) for g in line.split()[1:])}
    except (OSError, ValueError):
        pass
    try:
        return set(os.getgrouplist(user, gid))
    except (OSError, KeyError):  # a uid with no passwd entry
        return {gid}


def caller_groups(pid: int, uid: int, gid: int, user: str) -> frozenset[str]:
    """Group names of the connecting process; blocking (NSS may be remote)."""
    return frozenset(group_name(g) for g in caller_gids(pid, uid, gid, user))


class Access:
    """Roles from ``[access]``; cheap enough to ask on every request."""

    def __init__(self, section: AccessSection, owner_uid: int | None = None) -> None:
        self.owner_uid = os.getuid() if owner_uid is None else owner_uid
        self._entries: list[tuple[Role, frozenset[str]]] = [
            ("admin", frozenset(section.admins)),
            ("operator", frozenset(section.operators)),
            ("viewer", frozenset(section.viewers)),
        ]

    def role(self, uid: int, user: str, groups: Iterable[str]) -> Role | None:
        if uid in (0, self.owner_uid):
            return "admin"
        keys = {"*", user, *(f"@{g}" for g in groups)}
        for role, entries in self._entries:  # highest first
            if entries & keys:
                return role
        return None


def describe(role: Role | None) -> str:
    return "no role" if role is None else f"the {role} role"


__all__ = ["ROLES", "Access", "caller_groups", "describe"]
