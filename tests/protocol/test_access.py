"""Every request type needs a role, and the roles follow what the request does; a caller's role comes
from its user name, its groups and ``[access]``."""

from __future__ import annotations

from typing import Literal

import pytest

from daemon.access import Access
from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.access import ROLES, allows
from daemon.settings import AccessSection


def test_every_request_type_has_a_role_and_a_result() -> None:
    missing = [t.__name__ for t in q.REQUEST_TYPES if "role" not in vars(t) or not hasattr(t, "result")]
    assert missing == [], f"request types without their own role or a result type: {missing}"
    assert {t.role for t in q.REQUEST_TYPES} <= set(ROLES)


def test_a_request_class_without_a_role_is_caught() -> None:
    class NoRole(q.BaseRequest[r.Pong]):
        op: Literal["x.norole"] = "x.norole"

    assert "role" not in vars(NoRole)
    assert NoRole.result is r.Pong
    with pytest.raises(AttributeError):
        _ = NoRole().role


def test_changes_need_more_than_a_viewer_and_reads_need_no_more() -> None:
    for t in q.REQUEST_TYPES:
        if t.changes_state:
            assert t.role in ("operator", "admin"), t.__name__
    assert {t for t in q.REQUEST_TYPES if t.role == "admin"} == {q.DaemonStop, q.RemoveModel,
                                                                 q.RemoveVersion, q.Gc, q.ApproveCode}  # fmt: skip
    assert q.AuditRequest.role == "operator"  # who did what: not for every viewer


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
