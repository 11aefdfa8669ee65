"""Each deployment's bearer tokens, in the registry's database (so a backup keeps them and a crash leaves
the old pair or the new one, never half).

``token`` is the clients' token (shown once when made, in the same transaction as the deployment's row, see
``DeploymentStore.create``; a deployment made before tokens existed gets both at the next daemon start,
``provide_missing``); ``admin_token`` only the daemon uses (health checks, scrapes, feedback pulls,
rotation). The runtimes only ever receive their SHA-256 hashes.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

from daemon.protocol.errors import not_found

from .db import Db


def new_token() -> str:
    """256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Credentials:
    token: str
    admin_token: str
    created_at: float
    rotated_at: float


def insert(conn: sqlite3.Connection, deployment_id: int, *, with_token: bool = True) -> Credentials:
    """Make a deployment's credentials inside the caller's transaction."""
    now = time.time()
    made = Credentials(new_token() if with_token else "", new_token(), now, now)
    conn.execute(
        "INSERT INTO deployment_credentials (deployment_id, token, admin_token, created_at, rotated_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (deployment_id, made.token, made.admin_token, now, now),
    )
    return made


class CredentialStore:
    """Thread-safe; shares the registry's write lock (one writer at a time)."""

    def __init__(self, db: Db, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def get(self, deployment: str) -> Credentials | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT c.token, c.admin_token, c.created_at, c.rotated_at FROM deployment_credentials c "
                "JOIN deployments d ON d.id = c.deployment_id WHERE d.name = ?",
                (deployment,),
            ).fetchone()
        return None if row is None else Credentials(row[0], row[1], row[2], row[3])

    def ensure(self, deployment: str, *, with_token: bool) -> tuple[Credentials, bool]:
        """The deployment's credentials, made now if it has none (True then): an admin token always, a
        clients' token when ``with_token`` (a new deployment; one made before credentials existed gets both
        at the daemon's start, :meth:`provide_missing`)."""
        with self._lock, self._db.write() as conn:
            row = conn.execute("SELECT id FROM deployments WHERE name = ?", (deployment,)).fetchone()
            if row is None:
                raise not_found(f"no deployment named {deployment!r}")
            got = conn.execute(
                "SELECT token, admin_token, created_at, rotated_at FROM deployment_credentials WHERE deployment_id = ?",
                (row[0],),
            ).fetchone()
            if got is not None:
                return Credentials(got[0], got[1], got[2], got[3]), False
            return insert(conn, row[0], with_token=with_token), True

    def provide_missing(self) -> list[str]:
        """Give every deployment without credentials (made before they existed) both tokens, and every one
        with an admin token only (made by an earlier version) a clients' token, in one transaction; the
        names, sorted."""
        with self._lock, self._db.write() as conn:
            bare = conn.execute(
                "SELECT d.id, d.name FROM deployments d LEFT JOIN deployment_credentials c "
                "ON c.deployment_id = d.id WHERE c.deployment_id IS NULL ORDER BY d.name"
            ).fetchall()
            for dep_id, _ in bare:
                insert(conn, dep_id)
            tokenless = conn.execute(
                "SELECT d.name FROM deployments d JOIN deployment_credentials c ON c.deployment_id = d.id "
                "WHERE c.token = '' ORDER BY d.name"
            ).fetchall()
            now = time.time()
            for (name,) in tokenless:
                conn.execute(
                    "UPDATE deployment_credentials SET token = ?, rotated_at = ? WHERE deployment_id = "
                    "(SELECT id FROM deployments WHERE name = ?)",
                    (new_token(), now, name),
                )
        return sorted([n for _, n in bare] + [n for (n,) in tokenless])

    def rotate(self, deployment: str) -> Credentials:
        """A new clients' token (the admin token stays); made in one transaction."""
        self.ensure(deployment, with_token=False)
        token = new_token()
        with self._lock, self._db.write() as conn:
            conn.execute(
                "UPDATE deployment_credentials SET token = ?, rotated_at = ? WHERE deployment_id = "
                "(SELECT id FROM deployments WHERE name = ?)",
                (token, time.time(), deployment),
            )
        got = self.get(deployment)
        assert got is not None
        return got
