"""The audit trail: every request that changes state, and every refused request, with who sent it (from
the peer credentials, never from the frame), when, what it was about and how it ended (``audit_log``,
migration v11). ``modeltui audit`` reads it.

An entry is written when the request has ended, so it carries the result; a daemon killed between a change
and its entry loses that entry (the change itself is in the registry's own history: versions' creators,
alias events).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.protocol import results as r
from daemon.store.db import Db
from daemon.store.engine import make_engine

#: Entries kept (the oldest go).
KEEP = 1_000_000
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


class AuditStore:
    """Blocking: call through a thread."""

    def __init__(self, state_dir: Path, busy_timeout_s: float = 5.0) -> None:
        self._engine = make_engine(state_dir, busy_timeout_s=busy_timeout_s)
        self._db = Db(self._engine)
        self._written = 0

    def close(self) -> None:
        self._db.close()
        self._engine.dispose()

    def record(self, *, uid: int, user: str, pid: int, op: str, fields: dict[str, Any], result: str,
               message: str = "") -> None:  # fmt: skip
        row = (time.time(), uid, user, pid, op, target(fields), result, message[:1000],
               json.dumps(summarize(fields), default=str))  # fmt: skip
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO audit_log (at, uid, user, pid, op, target, result, message, request) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            self._written += 1
            if self._written % TRIM_EVERY == 0:
                conn.execute(
                    "DELETE FROM audit_log WHERE id <= (SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (KEEP,),
                )

    def list(self, since: datetime | None, user: str | None, limit: int) -> list[r.AuditEntry]:
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
