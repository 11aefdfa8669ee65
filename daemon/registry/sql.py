"""Hand-written SQL for the hot paths, straight to protocol DTOs (no ORM entities in between).

Every statement selects only the columns its caller returns, uses an index, and costs the same whatever the
number of versions (except what the caller asked for: a page of ``log``, a version's lineage). JSON columns
are decoded only when returned. DTOs are built with ``model_construct``: the values were validated on their
way into the database, re-validating them on the way out only costs time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import not_found
from daemon.protocol.names import Ref
from daemon.store.db import db_time, from_db_time


@dataclass(frozen=True, slots=True)
class ModelKey:
    id: int
    name: str
    next_number: int


# -- models ----------------------------------------------------------------------------------------------


def find_model(conn: sqlite3.Connection, name: str) -> ModelKey | None:
    row = conn.execute("SELECT id, name, next_number FROM models WHERE name = ?", (name,)).fetchone()
    return None if row is None else ModelKey(*row)


def get_model(conn: sqlite3.Connection, name: str) -> ModelKey:
    model = find_model(conn, name)
    if model is None:
        raise not_found(f"no model named {name!r}", model=name)
    return model


def create_model(conn: sqlite3.Connection, name: str, description: str, now: datetime) -> ModelKey:
    at = db_time(now)
    cur = conn.execute(
        "INSERT INTO models (name, description, next_number, created_at, updated_at) VALUES (?, ?, 1, ?, ?)",
        (name, description, at, at),
    )
    assert cur.lastrowid is not None
    return ModelKey(cur.lastrowid, name, 1)


def describe_model(conn: sqlite3.Connection, mid: int, description: str, now: datetime) -> None:
    conn.execute("UPDATE models SET description = ?, updated_at = ? WHERE id = ?", (description, db_time(now), mid))


_MODEL_SUMMARY = """
SELECT m.id, m.name, m.description, m.created_at, m.updated_at,
       (SELECT count(*) FROM versions WHERE model_id = m.id),
       (SELECT max(number) FROM versions WHERE model_id = m.id)
FROM models m
"""


def model_summaries(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[r.ModelSummary]:
    """Summaries of the models selected by ``where`` (a trusted SQL tail over ``m``), with their aliases."""
    rows = conn.execute(_MODEL_SUMMARY + where, args).fetchall()
    aliases: dict[int, dict[str, int]] = {row[0]: {} for row in rows}
    if len(rows) > 500:  # many models (a whole listing): one pass over every alias beats 10,000 parameters
        for mid, name, version in conn.execute("SELECT model_id, name, version FROM aliases ORDER BY name"):
            if mid in aliases:
                aliases[mid][name] = version
    elif rows:
        marks = ",".join("?" * len(rows))
        for mid, name, version in conn.execute(
            f"SELECT model_id, name, version FROM aliases WHERE model_id IN ({marks}) ORDER BY name",
            list(aliases),
        ):
            aliases[mid][name] = version
    return [
        r.ModelSummary.model_construct(
            name=name,
            description=description,
            created_at=from_db_time(created),
            updated_at=from_db_time(updated),
            versions=count,
            latest=latest,
            aliases=aliases[mid],
        )
        for mid, name, description, created, updated, count, latest in rows
    ]


def model_summary(conn: sqlite3.Connection, mid: int) -> r.ModelSummary:
    return model_summaries(conn, "WHERE m.id = ?", (mid,))[0]


def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {} if text == "{}" else json.loads(text)  # most versions have none: skip the decoder
    return tags


# -- versions --------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = "number, digest, parent, flavor, message, tags, created_by, created_at, size, file_count"


def latest_number(conn: sqlite3.Connection, mid: int) -> int | None:
    value = conn.execute("SELECT max(number) FROM versions WHERE model_id = ?", (mid,)).fetchone()[0]
    return None if value is None else int(value)


def version_exists(conn: sqlite3.Connection, mid: int, number: int) -> bool:
    found = conn.execute("SELECT 1 FROM versions WHERE model_id = ? AND number = ?", (mid, number)).fetchone()
    return found is not None


def check_version(conn: sqlite3.Connection, model: ModelKey, number: int) -> int:
    """``number`` if the model has that version, else NOT_FOUND saying which is the latest."""
    if not version_exists(conn, model.id, number):
        latest = latest_number(conn, model.id)
        tail = f"latest is {latest}" if latest is not None else "it has no versions"
        raise not_found(f"model {model.name!r} has no version {number}; {tail}", model=model.name)
    return number


def alias_map(conn: sqlite3.Connection, mid: int) -> dict[str, int]:
    return dict(conn.execute("SELECT name, version FROM aliases WHERE model_id = ? ORDER BY name", (mid,)))


def aliases_of(conn: sqlite3.Connection, mid: int, number: int) -> list[str]:
    rows = conn.execute("SELECT name FROM aliases WHERE model_id = ? AND version = ? ORDER BY name", (mid, number))
    return [name for (name,) in rows]


def resolve(conn: sqlite3.Connection, ref: Ref) -> tuple[ModelKey, int]:
    """``NAME`` → latest, ``NAME:N``, ``NAME@alias``: the model and an existing version number."""
    model = get_model(conn, ref.name)
    if ref.number is not None:
        return model, check_version(conn, model, ref.number)
    if ref.alias is not None:
        row = conn.execute(
            "SELECT version FROM aliases WHERE model_id = ? AND name = ?", (model.id, ref.alias)
        ).fetchone()
        if row is None:
            known = ", ".join(alias_map(conn, model.id)) or "none"
            raise not_found(f"model {model.name!r} has no alias {ref.alias!r} (aliases: {known})", model=model.name)
        return model, check_version(conn, model, int(row[0]))
    latest = latest_number(conn, model.id)
    if latest is None:
        raise not_found(f"model {model.name!r} has no versions", model=model.name)
    return model, latest


def _summary(row: tuple[Any, ...], model: str, aliases: list[str]) -> r.VersionSummary:
    number, digest, parent, flavor, message, tags, created_by, created_at, size, file_count = row
    return r.VersionSummary.model_construct(
        model=model,
        number=number,
        digest=digest,
        parent=parent,
        flavor=flavor,
        message=message,
        tags=_tags(tags),
        created_by=created_by,
        created_at=from_db_time(created_at),
        size=size,
        file_count=file_count,
        aliases=aliases,
    )


def summary(conn: sqlite3.Connection, model: ModelKey, number: int) -> r.VersionSummary:
    row = conn.execute(
        f"SELECT {SUMMARY_COLUMNS} FROM versions WHERE model_id = ? AND number = ?", (model.id, number)
    ).fetchone()
    return _summary(row, model.name, aliases_of(conn, model.id, number))


def new_summary(model: ModelKey, number: int, values: dict[str, Any], aliases: list[str]) -> r.VersionSummary:
    """The summary of a version this transaction just inserted from ``values``, without reading it back."""
    return r.VersionSummary.model_construct(
        model=model.name,
        number=number,
        digest=values["digest"],
        parent=values["parent"],
        flavor=values["flavor"],
        message=values["message"],
        tags=values["tags"],
        created_by=values["created_by"],
        created_at=values["created_at"],
        size=values["size"],
        file_count=values["file_count"],
        aliases=aliases,
    )


def log_page(conn: sqlite3.Connection, model: ModelKey, offset: int, limit: int) -> r.VersionList:
    """A page of versions, newest first, with their aliases (all of the model's, in one query)."""
    total = conn.execute("SELECT count(*) FROM versions WHERE model_id = ?", (model.id,)).fetchone()[0]
    by_version: dict[int, list[str]] = {}
    for name, number in alias_map(conn, model.id).items():
        by_version.setdefault(number, []).append(name)
    rows: list[r.VersionRow] = [
        (
            model.name,
            number,
            digest,
            parent,
            flavor,
            message,
            json.loads(tags),
            by,
            from_db_time(at),
            size,
            count,
            by_version.get(number, []),
        )
        for number, digest, parent, flavor, message, tags, by, at, size, count in conn.execute(
            f"SELECT {SUMMARY_COLUMNS} FROM versions WHERE model_id = ? ORDER BY number DESC LIMIT ? OFFSET ?",
            (model.id, limit, offset),
        )
    ]
    signed = best_signatures(conn, model.id, [row[1] for row in rows])
    return r.VersionList.model_construct(rows=rows, total=int(total), signed=signed)


def files(conn: sqlite3.Connection, mid: int, number: int) -> list[r.FileInfo]:
    rows = conn.execute(
        "SELECT f.path, f.size, f.sha256, f.executable FROM files f JOIN versions v ON v.id = f.version_id "
        "WHERE v.model_id = ? AND v.number = ? ORDER BY f.path",
        (mid, number),
    )
    return [
        r.FileInfo.model_construct(path=path, size=size, sha256=sha, executable=bool(x)) for path, size, sha, x in rows
    ]


def lineage(conn: sqlite3.Connection, model: ModelKey, number: int, parent: int | None) -> list[int]:
    """Ancestors nearest first, stopping at the first one that was removed.

    A version's parent is the newest version that existed when it was pushed, and numbers are never reused,
    so a parent that still exists is the next existing version below its child: walking the versions below
    ``number`` newest first, each row either continues the chain or ends it. A model that never lost a
    version (as many versions as numbers handed out) has every earlier number as ancestor: no walk needed.
    """
    if parent is None:
        return []
    count = conn.execute("SELECT count(*) FROM versions WHERE model_id = ?", (model.id,)).fetchone()[0]
    if count == model.next_number - 1:
        return list(range(parent, 0, -1))
    found: list[int] = []
    rows = conn.execute(
        "SELECT number, parent FROM versions WHERE model_id = ? AND number < ? ORDER BY number DESC",
        (model.id, number),
    )
    for ancestor, next_parent in rows:
        if ancestor != parent:
            break
        found.append(ancestor)
        if next_parent is None:
            break
        parent = next_parent
    return found


def detail(conn: sqlite3.Connection, model: ModelKey, number: int) -> r.VersionDetail:
    row = conn.execute(
        f"SELECT {SUMMARY_COLUMNS}, description, model_file, manifest, params, metrics, signature, requirements, "
        "source FROM versions WHERE model_id = ? AND number = ?",
        (model.id, number),
    ).fetchone()
    description, model_file, manifest, params, metrics, signature, requirements, source = row[10:]
    # Sorted here: with ORDER BY, SQLite may pick the (model_id, number) index and scan every version.
    children = conn.execute("SELECT number FROM versions WHERE model_id = ? AND parent = ?", (model.id, number))
    return r.VersionDetail.model_construct(
        version=_summary(row[:10], model.name, aliases_of(conn, model.id, number)),
        description=description,
        model_file=model_file,
        manifest=manifest,
        params=json.loads(params),
        metrics={k: float(v) for k, v in json.loads(metrics).items()},
        signature=json.loads(signature),
        requirements=json.loads(requirements),
        source=r.SourceInfo.model_construct(**json.loads(source)),
        files=files(conn, model.id, number),
        children=sorted(n for (n,) in children),
        lineage=lineage(conn, model, number, row[2]),
        signatures=signatures(conn, model.id, number),
    )


def version_by_digest(conn: sqlite3.Connection, mid: int, digest: str) -> int | None:
    # INDEXED BY: for min(number) SQLite prefers the (model_id, number) index and reads every version's row.
    row = conn.execute(
        "SELECT min(number) FROM versions INDEXED BY ix_versions_model_digest WHERE model_id = ? AND digest = ?",
        (mid, digest),
    ).fetchone()
    return None if row[0] is None else int(row[0])


_INSERT_VERSION = """
INSERT INTO versions (model_id, number, digest, parent, flavor, message, tags, params, metrics, signature,
                      requirements, description, model_file, manifest, source, created_by, created_at, size,
                      file_count)
VALUES (:model_id, :number, :digest, :parent, :flavor, :message, :tags, :params, :metrics, :signature,
        :requirements, :description, :model_file, :manifest, :source, :created_by, :created_at, :size,
        :file_count)
"""

_JSON_COLUMNS = ("tags", "params", "metrics", "signature", "requirements", "source")


def insert_version(
    conn: sqlite3.Connection,
    model: ModelKey,
    values: dict[str, Any],
    files: Sequence[q.PushFile],
    number: int | None = None,
) -> int:
    """Insert version ``number`` (default ``model.next_number``) with its files and advance the model's
    counter past it; returns the number.

    ``values`` holds the other columns; JSON ones as Python values, ``created_at`` as a datetime.
    """
    number = model.next_number if number is None else number
    row = {**values, "model_id": model.id, "number": number, "created_at": db_time(values["created_at"])}
    for column in _JSON_COLUMNS:
        row[column] = json.dumps(values[column])
    vid = conn.execute(_INSERT_VERSION, row).lastrowid
    conn.executemany(
        "INSERT INTO files (version_id, path, size, sha256, executable) VALUES (?, ?, ?, ?, ?)",
        [(vid, f.path, f.size, f.sha256, f.executable) for f in files],
    )
    conn.execute(
        "UPDATE models SET next_number = max(next_number, ?), updated_at = ? WHERE id = ?",
        (number + 1, row["created_at"], model.id),
    )
    return number


def retag(conn: sqlite3.Connection, mid: int, number: int, set_: dict[str, str], unset: list[str]) -> None:
    """Set and unset tags of a version (nothing when the version is not here)."""
    row = conn.execute("SELECT tags FROM versions WHERE model_id = ? AND number = ?", (mid, number)).fetchone()
    if row is None:
        return
    tags = {**_tags(row[0]), **set_}
    for key in unset:
        tags.pop(key, None)
    conn.execute("UPDATE versions SET tags = ? WHERE model_id = ? AND number = ?", (json.dumps(tags), mid, number))


def remove_version(conn: sqlite3.Connection, mid: int, number: int, now: datetime) -> None:
    vid = "(SELECT id FROM versions WHERE model_id = ? AND number = ?)"
    conn.execute(f"DELETE FROM files WHERE version_id = {vid}", (mid, number))
    conn.execute(f"DELETE FROM version_signatures WHERE version_id = {vid}", (mid, number))
    conn.execute("DELETE FROM versions WHERE model_id = ? AND number = ?", (mid, number))
    conn.execute("UPDATE models SET updated_at = ? WHERE id = ?", (db_time(now), mid))


# -- signatures ------------------------------------------------------------------------------------------

_SIGNATURE_COLUMNS = "s.status, s.principal, s.fingerprint, s.key_type, s.signed_by, s.signed_at, s.checked_at"
#: Verified first, then the newest.
_SIGNATURE_ORDER = "ORDER BY s.status <> 'verified', s.signed_at DESC, s.id DESC"


def _signature(row: tuple[Any, ...]) -> r.SignatureInfo:
    status, principal, fingerprint, key_type, by, signed_at, checked_at = row
    return r.SignatureInfo.model_construct(
        status=status,
        principal=principal,
        fingerprint=fingerprint,
        key_type=key_type,
        signed_by=by,
        signed_at=from_db_time(signed_at),
        checked_at=from_db_time(checked_at),
    )


def signatures(conn: sqlite3.Connection, mid: int, number: int) -> list[r.SignatureInfo]:
    rows = conn.execute(
        f"SELECT {_SIGNATURE_COLUMNS} FROM version_signatures s JOIN versions v ON v.id = s.version_id "
        f"WHERE v.model_id = ? AND v.number = ? {_SIGNATURE_ORDER}",
        (mid, number),
    )
    return [_signature(row) for row in rows]


def best_signatures(conn: sqlite3.Connection, mid: int, numbers: Sequence[int]) -> dict[int, r.SignatureInfo]:
    """The best signature (verified first, then the newest) of each of ``numbers`` that has one."""
    if not numbers:
        return {}
    marks = ",".join("?" * len(numbers))
    best: dict[int, r.SignatureInfo] = {}
    for number, *row in conn.execute(
        f"SELECT v.number, {_SIGNATURE_COLUMNS} FROM version_signatures s JOIN versions v ON v.id = s.version_id "
        f"WHERE v.model_id = ? AND v.number IN ({marks}) {_SIGNATURE_ORDER}",
        (mid, *numbers),
    ):
        best.setdefault(number, _signature(tuple(row)))
    return best


def signature_texts(conn: sqlite3.Connection, mid: int, number: int) -> list[tuple[int, str]]:
    """(row id, armored signature) of each signature of a version, for checking them again."""
    rows = conn.execute(
        "SELECT s.id, s.signature FROM version_signatures s JOIN versions v ON v.id = s.version_id "
        "WHERE v.model_id = ? AND v.number = ? ORDER BY s.id",
        (mid, number),
    )
    return [(int(i), str(text)) for i, text in rows]


def all_signatures(conn: sqlite3.Connection) -> list[tuple[int, str, int, str, str, str, str | None]]:
    """(id, model, number, digest, armored text, status, principal) of every recorded signature."""
    return list(
        conn.execute(
            "SELECT s.id, m.name, v.number, v.digest, s.signature, s.status, s.principal FROM version_signatures s "
            "JOIN versions v ON v.id = s.version_id JOIN models m ON m.id = v.model_id ORDER BY s.id"
        )
    )


def put_signature(conn: sqlite3.Connection, mid: int, number: int, values: dict[str, Any]) -> None:
    """Record a signature of a version; the same key's earlier signature of it is replaced."""
    conn.execute(
        "INSERT INTO version_signatures (version_id, fingerprint, key_type, signature, status, principal, "
        "signed_by, signed_at, checked_at) "
        "SELECT id, :fingerprint, :key_type, :signature, :status, :principal, :signed_by, :signed_at, :checked_at "
        "FROM versions WHERE model_id = :mid AND number = :number "
        "ON CONFLICT (version_id, fingerprint) DO UPDATE SET key_type = excluded.key_type, "
        "signature = excluded.signature, status = excluded.status, principal = excluded.principal, "
        "signed_by = excluded.signed_by, signed_at = excluded.signed_at, checked_at = excluded.checked_at",
        {
            **values,
            "signed_at": db_time(values["signed_at"]),
            "checked_at": db_time(values["checked_at"]),
            "mid": mid,
            "number": number,
        },
    )


def set_signature_check(conn: sqlite3.Connection, sid: int, status: str, principal: str | None, at: datetime) -> None:
    conn.execute(
        "UPDATE version_signatures SET status = ?, principal = ?, checked_at = ? WHERE id = ?",
        (status, principal, db_time(at), sid),
    )


# -- aliases ---------------------------------------------------------------------------------------------

_EVENT_COLUMNS = 'alias, from_version, to_version, "by", at, reason'


def record_move(conn: sqlite3.Connection, model: ModelKey, event: r.AliasEventInfo) -> None:
    """A move made elsewhere (another host): its event as it happened, and the alias where it left it."""
    if event.to_version is None:
        conn.execute("DELETE FROM aliases WHERE model_id = ? AND name = ?", (model.id, event.alias))
    else:
        conn.execute(
            "INSERT INTO aliases (model_id, name, version) VALUES (?, ?, ?) "
            "ON CONFLICT (model_id, name) DO UPDATE SET version = excluded.version",
            (model.id, event.alias, event.to_version),
        )
    row = (event.alias, event.from_version, event.to_version, event.by, db_time(event.at), event.reason)
    conn.execute(f"INSERT INTO alias_events (model_id, {_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (model.id, *row))  # fmt: skip


def _event(model: str, row: tuple[Any, ...]) -> r.AliasEventInfo:
    alias, from_version, to_version, by, at, reason = row
    return r.AliasEventInfo.model_construct(
        model=model,
        alias=alias,
        from_version=from_version,
        to_version=to_version,
        by=by,
        at=from_db_time(at),
        reason=reason,
    )


def latest_event(conn: sqlite3.Connection, model: ModelKey, alias: str) -> r.AliasEventInfo | None:
    row = conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM alias_events WHERE model_id = ? AND alias = ? ORDER BY at DESC, id DESC LIMIT 1",
        (model.id, alias),
    ).fetchone()
    return None if row is None else _event(model.name, row)


def move_alias(
    conn: sqlite3.Connection, model: ModelKey, alias: str, to: int | None, user: str, reason: str, now: datetime
) -> r.AliasEventInfo | None:
    """Point ``alias`` at ``to`` (None removes it) and record the move; None when nothing changed."""
    row = conn.execute("SELECT version FROM aliases WHERE model_id = ? AND name = ?", (model.id, alias)).fetchone()
    current = None if row is None else int(row[0])
    if current == to:
        return None
    if to is None:
        conn.execute("DELETE FROM aliases WHERE model_id = ? AND name = ?", (model.id, alias))
    elif row is None:
        conn.execute("INSERT INTO aliases (model_id, name, version) VALUES (?, ?, ?)", (model.id, alias, to))
    else:
        conn.execute("UPDATE aliases SET version = ? WHERE model_id = ? AND name = ?", (to, model.id, alias))
    at = db_time(now)
    event = (alias, current, to, user, at, reason)
    conn.execute(
        f"INSERT INTO alias_events (model_id, {_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (model.id, *event),
    )
    conn.execute("UPDATE models SET updated_at = ? WHERE id = ?", (at, model.id))
    return _event(model.name, event)
