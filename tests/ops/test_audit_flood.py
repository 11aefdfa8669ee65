"""Refusals cannot flush the audit trail (issue 15).

A user with no right to change anything used to write one audit entry per refused request (1,101 a second)
into a trail that kept only its newest 1,000,000 entries, operators' actions included. Now refusals are kept
under their own cap, so pruning them never deletes an action, and per uid only the first few refusals of each
window are written one by one: the rest are counted and written as one ``refusals`` entry.

The flood runs against a real system-mode daemon (``tests/ops/test_access``'s), sent by the viewer
``mtui-alice``'s own process; pruning and the counting run against a real database, with caps made small."""

from __future__ import annotations

import json
import pwd
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import audit as audit_mod
from daemon.audit import AGGREGATE_OP, AuditStore, RefusalLimiter
from daemon.store import migrations
from daemon.store.engine import make_engine
from tests.helpers.daemon import DaemonProcess
from tests.helpers.real_users import ACCESS_CONFIG, as_user, cli, python_for_users, system_daemon_process

pytestmark = [pytest.mark.timeout(120)]

FLOOD = 500

#: Sends argv[2] requests ``models.describe`` (an operator's request) and prints how each ended.
SEND = """
import asyncio, collections, json, sys
from pathlib import Path
from daemon.protocol import requests as q
from modeltui.client import connect

async def main():
    c = await connect(Path(sys.argv[1]))
    out = collections.Counter()
    for i in range(int(sys.argv[2])):
        try:
            await c.send(q.DescribeModel(name=f"nothing-{i}", description="x"))
            out["ok"] += 1
        except Exception as exc:
            out[str(getattr(exc, "code", "?"))] += 1
    await c.close()
    print(json.dumps(out))

asyncio.run(main())
"""




@pytest.fixture(scope="module")
def system_daemon() -> Iterator[DaemonProcess]:
    """The module's own system-mode daemon: a viewer floods it with refusals."""
    yield from system_daemon_process(ACCESS_CONFIG, "mtui-audit-")


def send(d: DaemonProcess, user: str, n: int) -> dict[str, int]:
    env = {k: v for k, v in d.env.items() if not k.startswith("MODELTUI_")}
    ran = as_user(user, [python_for_users(), "-c", SEND, str(d.socket), str(n)], env)
    assert ran.returncode == 0, ran.stderr
    got: dict[str, int] = json.loads(ran.stdout)
    return got


def trail(d: DaemonProcess, *args: str) -> list[dict[str, Any]]:
    got = cli(d, "mtui-bob", "audit", "--json", "--limit", "10000", *args)
    assert got.returncode == 0, got.stderr
    items: list[dict[str, Any]] = json.loads(got.stdout)["items"]
    return items


def test_a_flood_of_refusals_is_counted_and_the_operators_action_stays(
    system_daemon: DaemonProcess
) -> None:
    d = system_daemon
    # An operator's action first (allowed, failed: no such model), then the viewer's flood.
    assert send(d, "mtui-bob", 1) == {"NOT_FOUND": 1}
    started = time.monotonic()
    assert send(d, "mtui-alice", FLOOD) == {"FORBIDDEN": FLOOD}
    windows = 1 + int((time.monotonic() - started) // audit_mod.REFUSAL_WINDOW_S) + 1  # only a hang needs >1

    alice = pwd.getpwnam("mtui-alice").pw_uid
    items = trail(d, "--user", "mtui-alice")
    single = [e for e in items if e["op"] == "models.describe"]
    counted = [e for e in items if e["op"] == AGGREGATE_OP]
    assert all(e["result"] == "FORBIDDEN" and e["uid"] == alice for e in items), items
    assert len(single) <= audit_mod.REFUSALS_PER_WINDOW * windows, len(single)
    assert len(single) + sum(e["request"]["count"] for e in counted) == FLOOD  # every refusal, exactly once
    assert counted
    assert all(e["request"]["ops"] == {"models.describe": e["request"]["count"]} for e in counted)
    first = counted[-1]
    assert f"more refusals of mtui-alice (uid {alice}) between " in first["message"]
    assert "models.describe ×" in first["message"]
    assert first["target"] == f"count={first['request']['count']}"  # the table shows the count

    mine = trail(d, "--user", "mtui-bob")
    assert [(e["op"], e["result"], e["target"]) for e in mine if e["op"] == "models.describe"] == [
        ("models.describe", "NOT_FOUND", "name=nothing-0")
    ]

    # Read again: nothing counted twice (the reader's flush forgot what it wrote).
    again = trail(d, "--user", "mtui-alice")
    assert len(again) == len(items)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    engine = make_engine(tmp_path)
    migrations.migrate(engine)
    engine.dispose()
    return tmp_path


@pytest.fixture
def store(db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditStore]:
    monkeypatch.setattr(audit_mod, "KEEP", 50)
    monkeypatch.setattr(audit_mod, "KEEP_REFUSALS", 30, raising=False)
    monkeypatch.setattr(audit_mod, "TRIM_EVERY", 10)
    s = AuditStore(db)
    yield s
    s.close()


def refuse(s: AuditStore, uid: int, op: str = "models.rm") -> None:
    s.record(uid=uid, user=f"u{uid}", pid=1, op=op, fields={"name": "m"}, result="FORBIDDEN", message="no")


def act(s: AuditStore, n: int, result: str = "ok") -> None:
    s.record(uid=0, user="root", pid=1, op="models.describe", fields={"name": f"m{n}"}, result=result)


def test_pruning_refusals_never_deletes_an_action(store: AuditStore) -> None:
    act(store, 0)
    act(store, 1, "NOT_FOUND")  # an allowed request that failed is an action too
    for uid in range(1000, 1500):  # one refusal per uid: each is written one by one
        refuse(store, uid)
    items = store.list(None, None, 10_000)
    actions = [e.target for e in items if e.result != "FORBIDDEN"]
    assert actions == ["name=m1", "name=m0"]
    refusals = [e for e in items if e.result == "FORBIDDEN"]
    assert 30 <= len(refusals) < 30 + 10
    assert refusals[0].uid == 1499

    for n in range(2, 102):  # actions keep their own newest ones
        act(store, n)
    items = store.list(None, None, 10_000)
    kept = [e.target for e in items if e.result != "FORBIDDEN"]
    assert 50 <= len(kept) < 50 + 10
    assert kept[0] == "name=m101"
    assert len([e for e in items if e.result == "FORBIDDEN"]) == len(refusals)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_writes_a_few_counts_the_rest_and_stays_bounded() -> None:
    clock = Clock()
    lim = RefusalLimiter(per_window=3, window_s=60, max_uids=2, clock=clock)
    admitted = [lim.admit(7, "eve", "models.rm" if i % 2 else "push") for i in range(10)]
    assert [a for a, _ in admitted] == [True] * 3 + [False] * 7
    assert all(ended == [] for _, ended in admitted)
    assert lim.ended() == []

    clock.now += 59.9
    assert lim.admit(7, "eve", "push") == (False, [])
    clock.now += 0.1  # the window has ended: its count comes out with the next write, whoever's
    [agg] = lim.ended()
    assert (agg.uid, agg.user, agg.count, agg.first, agg.last) == (7, "eve", 8, 1_000_000.0, 1_000_059.9)
    assert agg.ops == (("models.rm", 4), ("push", 4))  # most frequent first, ties as they came
    assert "8 more refusals of eve (uid 7) between 1970-01-12T13:46:40Z and 1970-01-12T13:47:39Z" in agg.message()
    assert lim.admit(7, "eve", "push") == (True, [])  # a new window

    for _ in range(5):
        lim.admit(8, "mallory", "push")
    # A third uid evicts the oldest window (eve's): what it counted comes out, nothing is lost.
    assert lim.admit(9, "trent", "push") == (True, [])
    assert [(a.uid, a.count) for a in lim.drain()] == [(8, 2)]
    assert lim.drain() == []  # drained once
    assert lim.admit(8, "mallory", "push") == (False, [])  # draining keeps the window's limit
    for _ in range(4):
        lim.admit(9, "trent", "push")
    admitted, evicted = lim.admit(10, "victor", "push")  # evicts mallory: her one count since comes out
    assert admitted
    assert [(a.uid, a.count) for a in evicted] == [(8, 1)]
    admitted, evicted = lim.admit(11, "walter", "push")
    assert [(a.uid, a.count) for a in evicted] == [(9, 2)]
    assert lim.drain() == []


def test_the_store_writes_counts_at_the_next_write_after_the_window_and_at_close(db: Path) -> None:
    clock = Clock()
    s = AuditStore(db, limiter=RefusalLimiter(per_window=2, window_s=60, clock=clock))
    for _ in range(7):
        refuse(s, 5)
    clock.now += 61
    act(s, 1)  # anyone's write after the window writes the count first
    with s._db.read() as conn:
        rows = conn.execute("SELECT op, message FROM audit_log ORDER BY id").fetchall()
    assert [op for op, _ in rows] == ["models.rm", "models.rm", AGGREGATE_OP, "models.describe"]
    assert rows[2][1].startswith("5 more refusals of u5 (uid 5)")
    for _ in range(4):
        refuse(s, 5)
    s.close()  # shutdown writes what is still counted
    s2 = AuditStore(db)
    try:
        items = s2.list(None, None, 100)
        assert items[0].op == AGGREGATE_OP
        assert items[0].message.startswith("2 more refusals of u5")
    finally:
        s2.close()
