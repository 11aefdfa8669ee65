"""What the run-code policy records with each version (table ``version_code``): the pickle scan and an
admin's approval, and the reads it needs (daemon/registry/codepolicy.py decides; this only stores)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from daemon.protocol.errors import ErrorCode, ProtocolError

from .db import Db
from .faults import NO_FAULTS, Faults


@dataclass(frozen=True)
class VersionCodeRow:
    version_id: int
    manifest: str
    digest: str
    scan: str | None
    """The recorded scan (JSON), None when the version was never scanned."""
    scanned_at: float | None
    approved_by: str | None
    approved_at: float | None


class CodeStore:
    """Thread-safe; shares the registry's write lock (one writer at a time)."""

    def __init__(self, db: Db, lock: threading.Lock, faults: Faults = NO_FAULTS) -> None:
        self._db = db
        self._lock = lock
        self._faults = faults

    def get(self, model: str, number: int) -> VersionCodeRow:
        """The version's manifest, digest and what is recorded for it (NOT_FOUND: no such version)."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT v.id, v.manifest, v.digest, c.scan, c.scanned_at, c.approved_by, c.approved_at "
                "FROM versions v JOIN models m ON m.id = v.model_id "
                "LEFT JOIN version_code c ON c.version_id = v.id WHERE m.name = ? AND v.number = ?",
                (model, number),
            ).fetchone()
        if row is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"{model} has no version {number}")
        return VersionCodeRow(int(row[0]), str(row[1]), str(row[2]), row[3], row[4], row[5], row[6])

    def file_sha256(self, version_id: int, path: str) -> str | None:
        """The content address of the version's file at ``path`` (None: the version has no such file)."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT sha256 FROM files WHERE version_id = ? AND path = ?", (version_id, path)
            ).fetchone()
        return None if row is None else str(row[0])

    def record_scan(self, version_id: int, scan_json: str, at: float) -> None:
        with self._lock, self._db.write(self._faults) as conn:
            conn.execute(
                "INSERT INTO version_code (version_id, scan, scanned_at) VALUES (?, ?, ?) "
                "ON CONFLICT (version_id) DO UPDATE SET scan = excluded.scan, scanned_at = excluded.scanned_at",
                (version_id, scan_json, at),
            )

    def approve(self, version_id: int, user: str, at: float, reason: str) -> None:
        with self._lock, self._db.write(self._faults) as conn:
            conn.execute(
                "INSERT INTO version_code (version_id, approved_by, approved_at, approval_reason) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (version_id) DO UPDATE SET approved_by = excluded.approved_by, "
                "approved_at = excluded.approved_at, approval_reason = excluded.approval_reason",
                (version_id, user, at, reason),
            )

    def last_move_from(self, model: str, alias: str) -> int | None:
        """The version ``model@alias`` pointed at before its latest move (None: none recorded)."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT e.from_version FROM alias_events e JOIN models m ON m.id = e.model_id "
                "WHERE m.name = ? AND e.alias = ? ORDER BY e.at DESC, e.id DESC LIMIT 1",
                (model, alias),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])


__all__ = ["CodeStore", "VersionCodeRow"]
