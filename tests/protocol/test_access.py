"""Every request type needs a role, and the roles follow what the request does; a caller's role comes
from its user name, its groups and ``[access]``."""

from __future__ import annotations

import pytest

from daemon.access import Access
from daemon.protocol import requests as q
from daemon.protocol.access import ROLES, allows
from daemon.settings import AccessSection


def test_every_request_type_has_a_role() -> None:
    missing = [t.__name__ for t in q.RESULT_OF if t not in q.ROLE_OF]
    assert missing == [], f"request types without a role: {missing}"
    assert set(q.ROLE_OF) == set(q.RESULT_OF)
    assert set(q.ROLE_OF.values()) <= set(ROLES)


def test_changes_need_more_than_a_viewer_and_reads_need_no_more() -> None:
    for t in q.MUTATING:
        assert q.ROLE_OF[t] in ("operator", "admin"), t.__name__
    assert {t for t, role in q.ROLE_OF.items() if role == "admin"} == {q.DaemonStop, q.RemoveModel,
                                                                       q.RemoveVersion, q.Gc}  # fmt: skip
    assert q.ROLE_OF[q.AuditRequest] == "operator"  # who did what: not for every viewer


@pytest.mark.parametrize(
    ("uid", "user", "groups", "role"),
    [
        (0, "root", [], "admin"),
        (4242, "svc", [], "admin"),  # the daemon's own user
        (1001, "alice", ["staff"], "viewer"),  # "*"
        (1002, "bob", ["ops"], "operator"),
        (1003, "carol", ["ops", "wheel"], "admin"),  # the highest entry wins
        (1004, "dave", [], "operator"),  # by name
    ],
)
def test_roles_from_names_and_groups(uid: int, user: str, groups: list[str], role: str) -> None:
    access = Access(AccessSection(admins=["@wheel"], operators=["@ops", "dave"], viewers=["*"]), owner_uid=4242)
    assert access.role(uid, user, groups) == role


def test_no_entry_means_no_role() -> None:
    access = Access(AccessSection(operators=["@ops"], viewers=["@staff"]), owner_uid=4242)
    assert access.role(1001, "eve", ["games"]) is None
    assert not allows(None, "viewer")
    assert allows("admin", "operator")
    assert not allows("viewer", "operator")
