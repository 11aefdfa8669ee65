"""Deployment rows and their event log, in plain SQL on the registry's database.

The manager keeps a :class:`DeploymentRecord` per deployment and writes it back after every change, so
a daemon restarted at any moment finds what should run (``desired``, ``ref``) and what was running
(``instance``: the pid and start time or the container id) and adopts it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from daemon.protocol.deploy import ContainerOptions, DeploymentEventInfo, DeploymentInfo, InstanceInfo
from daemon.protocol.errors import conflict, not_found

from . import credentials
from .credentials import Credentials
from .db import Db, db_time, from_db_time
from .tables import utcnow

#: Events kept per deployment; older ones are dropped as new ones arrive.
MAX_EVENTS = 500

COLUMNS = (
    "name, model, ref, alias, version, backend, port, env, options, desired, state, health, restarts, "
    "message, instance, image, created_at, updated_at, started_at"
)


@dataclass
class DeploymentRecord:
    name: str
    model: str
    ref: str
    alias: str | None
    version: int | None
    backend: str
    port: int
    env: dict[str, str]
    options: dict[str, Any]
    desired: str = "running"
    state: str = "pending"
    health: str = "unknown"
    restarts: int = 0
    message: str = ""
    instance: dict[str, Any] | None = None
    image: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None

    def info(self, rollout_to: int | None = None) -> DeploymentInfo:
        inst = self.instance
        return DeploymentInfo(
            name=self.name,
            ref=self.ref,
            model=self.model,
            version=self.version,
            backend=self.backend,
            desired=self.desired,
            state=self.state,
            health=self.health,
            endpoint=f"http://127.0.0.1:{self.port}" if inst else None,
            port=self.port,
            restarts=self.restarts,
            message=self.message,
            env=self.env,
            options=ContainerOptions.model_validate(self.options),
            instance=InstanceInfo(
                id=inst["instance_id"],
                version=inst["version"],
                key=inst["key"],
                admin_url=f"http://127.0.0.1:{inst['admin_port']}",
                started_at=datetime.fromisoformat(inst["started_at"]),
            )
            if inst
            else None,
            rollout_to=rollout_to,
            image=self.image,
            created_at=self.created_at,
            updated_at=self.updated_at,
            started_at=self.started_at,
        )


def _row(values: sqlite3.Row | tuple[Any, ...]) -> DeploymentRecord:
    (name, model, ref, alias, version, backend, port, env, options, desired, state, health, restarts, message,
     instance, image, created, updated, started) = values  # fmt: skip
    return DeploymentRecord(
        name=name,
        model=model,
        ref=ref,
        alias=alias,
        version=version,
        backend=backend,
        port=port,
        env=json.loads(env),
        options=json.loads(options),
        desired=desired,
        state=state,
        health=health,
        restarts=restarts,
        message=message,
        instance=json.loads(instance) if instance else None,
        image=image,
        created_at=from_db_time(created),
        updated_at=from_db_time(updated),
        started_at=from_db_time(started) if started else None,
    )


def _values(rec: DeploymentRecord) -> tuple[Any, ...]:
    return (
        rec.name,
        rec.model,
        rec.ref,
        rec.alias,
        rec.version,
        rec.backend,
        rec.port,
        json.dumps(rec.env),
        json.dumps(rec.options),
        rec.desired,
        rec.state,
        rec.health,
        rec.restarts,
        rec.message,
        json.dumps(rec.instance) if rec.instance is not None else None,
        rec.image,
        db_time(rec.created_at),
        db_time(rec.updated_at),
        db_time(rec.started_at) if rec.started_at else None,
    )


class DeploymentStore:
    """Thread-safe; shares the registry's write lock so the two never interleave transactions."""

    def __init__(self, db: Db, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def create(self, rec: DeploymentRecord, message: str) -> Credentials:
        """Store a new deployment with its credentials, in one transaction (shown once, by the caller)."""
        with self._lock, self._db.write() as conn:
            if conn.execute("SELECT 1 FROM deployments WHERE name = ?", (rec.name,)).fetchone():
                raise conflict(f"a deployment named {rec.name!r} exists; undeploy it or choose another --name")
            taken = conn.execute(
                "SELECT name FROM deployments WHERE port = ? AND desired = 'running'", (rec.port,)
            ).fetchone()
            if taken:
                raise conflict(f"port {rec.port} is used by deployment {taken[0]!r}")
            marks = ", ".join("?" * len(fields(rec)))
            cur = conn.execute(f"INSERT INTO deployments ({COLUMNS}) VALUES ({marks})", _values(rec))
            self._add_event(conn, int(cur.lastrowid or 0), "created", rec.version, message)
            return credentials.insert(conn, int(cur.lastrowid or 0))

    def save(self, rec: DeploymentRecord, event: tuple[str, str] | None = None) -> None:
        """Write the record back (all columns); ``event`` = (kind, message) is appended in the same commit."""
        rec.updated_at = utcnow()
        sets = ", ".join(f"{c.strip()} = ?" for c in COLUMNS.split(","))
        with self._lock, self._db.write() as conn:
            cur = conn.execute(f"UPDATE deployments SET {sets} WHERE name = ?", (*_values(rec), rec.name))
            if cur.rowcount == 0:
                raise not_found(f"no deployment named {rec.name!r}")
            if event is not None:
                row = conn.execute("SELECT id FROM deployments WHERE name = ?", (rec.name,)).fetchone()
                self._add_event(conn, row[0], event[0], rec.version, event[1])

    @staticmethod
    def _add_event(conn: sqlite3.Connection, dep_id: int, kind: str, version: int | None, message: str) -> None:
        conn.execute(
            "INSERT INTO deployment_events (deployment_id, at, kind, version, message) VALUES (?, ?, ?, ?, ?)",
            (dep_id, db_time(utcnow()), kind, version, message[:2000]),
        )
        conn.execute(
            "DELETE FROM deployment_events WHERE deployment_id = ? AND id <= "
            "(SELECT id FROM deployment_events WHERE deployment_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (dep_id, dep_id, MAX_EVENTS),
        )

    def delete(self, name: str) -> None:
        with self._lock, self._db.write() as conn:
            conn.execute("DELETE FROM deployments WHERE name = ?", (name,))

    def all(self) -> list[DeploymentRecord]:
        with self._db.read() as conn:
            return [_row(v) for v in conn.execute(f"SELECT {COLUMNS} FROM deployments ORDER BY name")]

    def events(self, name: str, limit: int) -> list[DeploymentEventInfo]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT e.at, e.kind, e.version, e.message FROM deployment_events e "
                "JOIN deployments d ON d.id = e.deployment_id WHERE d.name = ? ORDER BY e.id DESC LIMIT ?",
                (name, limit),
            ).fetchall()
        return [DeploymentEventInfo(at=from_db_time(a), kind=k, version=v, message=m) for a, k, v, m in rows]


def deployed_versions(conn: sqlite3.Connection, model: str) -> dict[int, list[str]]:
    """Version number → deployments serving it (so removing a deployed version can be refused)."""
    out: dict[int, list[str]] = {}
    for name, version in conn.execute(
        "SELECT name, version FROM deployments WHERE model = ? AND version IS NOT NULL AND desired = 'running'",
        (model,),
    ):
        out.setdefault(version, []).append(name)
    return out
