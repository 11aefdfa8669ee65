"""The audit trail: every request that changes state, and every refused request, with who sent it (from
the peer credentials, never from the frame), when, what it was about and how it ended (``audit_log``,
migration v11). ``modeltui audit`` reads it.

An entry is written when the request has ended, so it carries the result; a daemon killed between a change
and its entry loses that entry (the change itself is in the registry's own history: versions' creators,
alias events).

Refusals cannot flush the trail. They are kept under their own cap (:data:`KEEP_REFUSALS`; pruning them
never deletes an action, which has :data:`KEEP` of its own), and per uid only :data:`REFUSALS_PER_WINDOW`
refusals per :data:`REFUSAL_WINDOW_S` are written one by one (:class:`RefusalLimiter`): the rest are counted
in memory and written as one ``refusals`` entry per uid and window. No timer: that entry is written by the
first audit write after the window ends (anyone's), by ``audit.list`` (a reader sees every refusal counted
so far), when the uid is evicted from the bounded table of tracked uids, and at shutdown (:meth:`close`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode
from daemon.store.db import Db
from daemon.store.engine import make_engine

log = logging.getLogger("modeltuid.audit")

#: Entries of actions kept (the oldest go): everything but refusals.
KEEP = 1_000_000
#: Refusal entries kept (the oldest refusals go, never an action).
KEEP_REFUSALS = 100_000
#: The result of a refused request.
REFUSED = ErrorCode.FORBIDDEN.value
#: Per uid, this many refusals per window are written one by one; the rest are counted into one entry.
REFUSALS_PER_WINDOW = 10
REFUSAL_WINDOW_S = 60.0
#: Uids whose refusals are counted at once (beyond, the oldest window's count is written and forgotten).
MAX_TRACKED_UIDS = 1024
#: The op of the entry that counts a uid's refusals beyond the limit.
AGGREGATE_OP = "refusals"
#: Trimming runs once per this many entries.
TRIM_EVERY = 1_000
#: Long strings and lists in the recorded request are cut to these sizes.
MAX_TEXT = 200
MAX_ITEMS = 20
#: Request fields that name what a request is about, in the order the target shows them.
TARGET_FIELDS = ("name", "model", "ref", "deployment", "run", "version", "alias", "rule")


def summarize(value: Any, depth: int = 0) -> Any:
    """The request's fields as recorded: long strings, long lists and deep nesting cut."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, list):
        items = [summarize(v, depth + 1) for v in value[:MAX_ITEMS]]
        return [*items, f"… {len(value) - MAX_ITEMS} more"] if len(value) > MAX_ITEMS else items
    if isinstance(value, dict):
        if depth > 3:
            return "{…}"
        return {str(k)[:MAX_TEXT]: summarize(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
    return value


def target(fields: dict[str, Any]) -> str:
    """``breast-cancer`` / ``version=3 alias=production`` … from the fields that name things."""
    parts = [f"{k}={fields[k]}" for k in TARGET_FIELDS if fields.get(k) not in (None, "", [])]
    return " ".join(parts)[:MAX_TEXT]


@dataclass(frozen=True)
class Aggregate:
    """Refusals of one uid that were counted, not written one by one."""

    uid: int
    user: str
    count: int
    first: float
    last: float
    ops: tuple[tuple[str, int], ...]  # most frequent first

    def message(self) -> str:
        def at(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        top = ", ".join(f"{op} ×{n}" for op, n in self.ops[:5])
        more = f", {len(self.ops) - 5} more ops" if len(self.ops) > 5 else ""
        return (f"{self.count} more refusals of {self.user} (uid {self.uid}) between {at(self.first)} and "
                f"{at(self.last)}: {top}{more}")  # fmt: skip


@dataclass
class _Window:
    user: str
    start: float
    written: int = 0
    counted: int = 0
    first: float = 0.0
    last: float = 0.0
    ops: Counter[str] = field(default_factory=Counter)

    def take(self, uid: int) -> Aggregate | None:
        """The refusals counted so far (and forget them; the written ones still count against the limit)."""
        if not self.counted:
            return None
        agg = Aggregate(uid, self.user, self.counted, self.first, self.last, tuple(self.ops.most_common()))
        self.counted, self.ops = 0, Counter()
        return agg


class RefusalLimiter:
    """Per uid, the first ``per_window`` refusals of each window are written; the rest are counted.

    In memory and bounded: at most ``max_uids`` windows, each holding counts per op (a small fixed set). The
    windows are kept in the order they began, so the ended ones are found at the front. Thread-safe."""

    def __init__(self, per_window: int = REFUSALS_PER_WINDOW, window_s: float = REFUSAL_WINDOW_S,
                 max_uids: int = MAX_TRACKED_UIDS, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.per_window = per_window
        self.window_s = window_s
        self.max_uids = max_uids
        self.clock = clock
        self._windows: OrderedDict[int, _Window] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, uid: int, user: str, op: str) -> tuple[bool, list[Aggregate]]:
        """Whether this refusal is written one by one, and the counts of ended windows to write before it."""
        with self._lock:
            now = self.clock()
            out = self._ended(now)
            w = self._windows.get(uid)
            if w is None:
                w = self._windows[uid] = _Window(user, now)
                while len(self._windows) > self.max_uids:
                    old_uid, old = self._windows.popitem(last=False)
                    if (agg := old.take(old_uid)) is not None:
                        out.append(agg)
            if w.written < self.per_window:
                w.written += 1
                return True, out
            if not w.counted:
                w.first = now
            w.counted += 1
            w.last = now
            w.ops[op] += 1
            return False, out

    def ended(self) -> list[Aggregate]:
        """The counts of windows that have ended (their windows are forgotten)."""
        with self._lock:
            return self._ended(self.clock())

    def drain(self) -> list[Aggregate]:
        """Every count held, ended windows or not (the windows' limits stay)."""
        with self._lock:
            out = self._ended(self.clock())
            out += [a for uid, w in self._windows.items() if (a := w.take(uid)) is not None]
            return out

    def _ended(self, now: float) -> list[Aggregate]:
        out: list[Aggregate] = []
        while self._windows:
            uid, w = next(iter(self._windows.items()))
            if now < w.start + self.window_s:
                break
            del self._windows[uid]
            if (agg := w.take(uid)) is not None:
                out.append(agg)
        return out


Row = tuple[float, int, str, int, str, str, str, str, str]


def aggregate_row(a: Aggregate) -> Row:
    request = {"count": a.count, "first": a.first, "last": a.last, "ops": dict(a.ops[:MAX_ITEMS])}
    return (a.last, a.uid, a.user, 0, AGGREGATE_OP, f"count={a.count}", REFUSED, a.message()[:1000],
            json.dumps(request))  # fmt: skip


class AuditStore:
    """Blocking: call through a thread."""

    def __init__(self, state_dir: Path, busy_timeout_s: float = 5.0, limiter: RefusalLimiter | None = None) -> None:
        self._engine = make_engine(state_dir, busy_timeout_s=busy_timeout_s)
        self._db = Db(self._engine)
        self.limiter = limiter if limiter is not None else RefusalLimiter()
        self._written = {False: 0, True: 0}  # by refusal or not
        self._count_lock = threading.Lock()

    def close(self) -> None:
        """Write the refusals still counted, then close."""
        try:
            self.flush()
        finally:
            self._db.close()
            self._engine.dispose()

    def flush(self) -> None:
        """Write every refusal count held in memory; a failing write (a full disk) is logged, not raised."""
        aggregates = self.limiter.drain()
        try:
            self._write([aggregate_row(a) for a in aggregates])
        except sqlite3.Error as exc:
            log.warning("could not write the counts of %d users' refusals: %s", len(aggregates), exc)

    def record(self, *, uid: int, user: str, pid: int, op: str, fields: dict[str, Any], result: str,
               message: str = "") -> None:  # fmt: skip
        if result == REFUSED:
            one_by_one, ended = self.limiter.admit(uid, user, op)
        else:
            one_by_one, ended = True, self.limiter.ended()
        rows = [aggregate_row(a) for a in ended]
        if one_by_one:
            rows.append((time.time(), uid, user, pid, op, target(fields), result, message[:1000],
                         json.dumps(summarize(fields), default=str)))  # fmt: skip
        self._write(rows)

    def _write(self, rows: list[Row]) -> None:
        if not rows:
            return
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO audit_log (at, uid, user, pid, op, target, result, message, request) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            trim = set()
            with self._count_lock:
                for row in rows:
                    refusal = row[6] == REFUSED
                    self._written[refusal] += 1
                    if self._written[refusal] % TRIM_EVERY == 0:
                        trim.add(refusal)
            # Refusals and actions each keep their newest entries: pruning one kind never deletes the other.
            if True in trim:
                conn.execute(
                    "DELETE FROM audit_log WHERE result = ? AND id <= (SELECT id FROM audit_log WHERE result = ? "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (REFUSED, REFUSED, KEEP_REFUSALS),
                )
            if False in trim:
                conn.execute(
                    "DELETE FROM audit_log WHERE result != ? AND id <= (SELECT id FROM audit_log WHERE result != ? "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (REFUSED, REFUSED, KEEP),
                )

    def list(self, since: datetime | None, user: str | None, limit: int) -> list[r.AuditEntry]:
        self.flush()  # the reader sees every refusal counted so far
        sql = "SELECT at, uid, user, pid, op, target, result, message, request FROM audit_log WHERE at >= ?"
        args: list[Any] = [since.timestamp() if since is not None else 0.0]
        if user is not None:
            sql += " AND user = ?"
            args.append(user)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._db.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        keys = ("at", "uid", "user", "pid", "op", "target", "result", "message", "request")
        entries = [dict(zip(keys, row, strict=True)) for row in rows]
        for e in entries:
            e["at"] = datetime.fromtimestamp(e["at"], UTC)
            e["request"] = json.loads(e["request"])
        return [r.AuditEntry.model_validate(e) for e in entries]
