"""``modeltuid verify PATH``: check a backup or a state directory (database integrity, schema, and the sha256 of
every referenced object); problems are listed, never repaired."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from daemon.backup.common import (
    EXIT_FAILED,
    EXIT_OK,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    WORKERS,
    count_rows,
    has_table,
    hash_file,
    object_path,
    referenced_objects,
)
from daemon.store.engine import DB_NAME
from daemon.store.migrations import MIGRATIONS


@dataclass
class VerifyReport:
    path: Path
    kind: str
    """``"backup"`` (has a MANIFEST.json) or ``"state"``."""
    schema_version: int | None = None
    models: int = 0
    versions: int = 0
    objects: int = 0
    """Distinct referenced objects checked (files and blobs)."""
    object_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_manifest(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{MANIFEST}: unreadable: {exc}")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST}: not a modeltui backup manifest")
        return None
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(
            f"{MANIFEST}: backup format version {manifest.get('format_version')!r} is not supported "
            f"(this modeltui reads version {FORMAT_VERSION})"
        )
        return None
    return manifest


def verify(path: Path) -> VerifyReport:
    """Check a backup or a state directory: the manifest (a backup's) and the database file's sha256,
    ``PRAGMA integrity_check``, ``PRAGMA foreign_key_check``, a known schema version, and every object that
    ``files`` references: present as a file object (size and sha256 checked) or else as a blob (same). Blobs
    themselves are re-hashed too. Never writes to a backup; problems are listed, not raised."""
    kind = "backup" if (path / MANIFEST).exists() else "state"
    report = VerifyReport(path=path, kind=kind)
    problems = report.problems
    db_path = path / DB_NAME
    if not db_path.is_file():
        problems.append(f"{DB_NAME} is missing")
        return report
    manifest = _read_manifest(path, problems) if kind == "backup" else None
    if manifest is not None:
        db = manifest.get("db", {})
        sha, size = hash_file(db_path)
        if sha != db.get("sha256") or size != db.get("size"):
            problems.append(
                f"{DB_NAME}: {size} bytes with sha256 {sha[:16]}…, but the manifest records "
                f"{db.get('size')} bytes with sha256 {str(db.get('sha256'))[:16]}…"
            )
    # A backup is never written to (immutable: no locks, no -shm); a state directory may be live.
    params = "mode=ro&immutable=1" if kind == "backup" else "mode=ro"
    try:
        conn = sqlite3.connect(f"file:{quote(os.fspath(db_path))}?{params}", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        problems.append(f"{DB_NAME}: cannot open: {exc}")
        return report
    try:
        _check_db(conn, path, report, manifest)
    except sqlite3.DatabaseError as exc:
        problems.append(f"{DB_NAME}: {exc}")
    finally:
        conn.close()
    return report


def _check_db(conn: sqlite3.Connection, root: Path, report: VerifyReport, manifest: dict[str, Any] | None) -> None:
    conn.execute("BEGIN")  # one snapshot for every query below (a live state directory)
    if _check_schema(conn, report, manifest):
        _check_objects(conn, root, report)


def _check_schema(conn: sqlite3.Connection, report: VerifyReport, manifest: dict[str, Any] | None) -> bool:
    """Integrity, foreign keys, a known schema version, the registry tables and the manifest's counts; False
    when the objects cannot be checked (nothing after a failed integrity check can be trusted)."""
    problems = report.problems
    integrity = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)")]
    if integrity != ["ok"]:
        problems.extend(f"integrity_check: {line}" for line in integrity)
        return False
    fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    if fk:
        tables = sorted({str(row[0]) for row in fk})
        problems.append(f"foreign_key_check: {len(fk)} row(s) with a dangling reference in {', '.join(tables)}")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    report.schema_version = version
    if not 1 <= version <= len(MIGRATIONS):
        problems.append(f"schema version {version} is unknown (this modeltui knows 1..{len(MIGRATIONS)})")
        return False
    if manifest is not None and manifest.get("schema_version") != version:
        problems.append(f"schema version {version}, but the manifest records {manifest.get('schema_version')}")
    if not (has_table(conn, "files") and has_table(conn, "models") and has_table(conn, "versions")):
        problems.append("the registry tables are missing")
        return False
    report.models, report.versions = count_rows(conn, "models"), count_rows(conn, "versions")
    if manifest is not None:
        counts = manifest.get("counts", {})
        for name, got in (("models", report.models), ("versions", report.versions)):
            if counts.get(name) != got:
                problems.append(f"{got} {name}, but the manifest records {counts.get(name)}")
    return True


def _check_objects(conn: sqlite3.Connection, root: Path, report: VerifyReport) -> None:
    """Every object ``files`` references: a file object (re-hashed) or else a blob of the recorded size; then
    every blob re-hashed."""
    problems = report.problems
    has_blobs = has_table(conn, "blobs")
    blob_sizes: dict[str, int] = (
        {str(s): int(n) for s, n in conn.execute("SELECT sha256, size FROM blobs")} if has_blobs else {}
    )
    referenced = referenced_objects(conn)
    report.objects = len(referenced)
    files: list[tuple[str, int]] = []
    inline: list[str] = []
    for sha, lo, hi in referenced:
        report.object_bytes += hi
        if lo != hi:
            problems.append(f"object {sha}: files record different sizes ({lo} and {hi})")
        if object_path(root, sha).exists():
            files.append((sha, hi))
        elif sha in blob_sizes:
            inline.append(sha)
        else:
            problems.append(f"object {sha} ({hi} bytes) is missing")
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="verify") as pool:
        problems.extend(p for p in pool.map(lambda item: _check_file(root, *item), files) if p is not None)
    sizes = {sha: hi for sha, _, hi in referenced}
    for sha in inline:
        if blob_sizes[sha] != sizes[sha]:
            problems.append(f"object {sha}: blob of {blob_sizes[sha]} bytes, {sizes[sha]} expected")
    if has_blobs:
        for sha, size, data in conn.execute("SELECT sha256, size, data FROM blobs"):
            blob = bytes(data)
            if len(blob) != size or hashlib.sha256(blob).hexdigest() != sha:
                problems.append(f"blob {sha}: content does not match its sha256 or size")


def _check_file(root: Path, sha: str, size: int) -> str | None:
    """The problem with one file object, or None when its size and sha256 are right."""
    try:
        got, got_size = hash_file(object_path(root, sha))
    except OSError as exc:
        return f"object {sha}: unreadable: {exc.strerror}"
    if got_size != size:
        return f"object {sha}: {got_size} bytes, {size} expected"
    if got != sha:
        return f"object {sha}: content does not match its sha256 (hashes to {got})"
    return None


def verify_main(path: Path, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``modeltuid verify PATH`` (a backup or a state directory): 0 when sound, 1 with the problems."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        report = verify(path)
    except (OSError, sqlite3.Error) as exc:
        print(f"modeltuid verify: {exc}", file=err)
        return EXIT_FAILED
    what = f"{report.kind} {path}: {report.models} models, {report.versions} versions, {report.objects} objects"
    if report.ok:
        print(f"{what}, schema {report.schema_version}: ok", file=out)
        return EXIT_OK
    print(f"modeltuid verify: {what}: {len(report.problems)} problem(s):", file=err)
    for problem in report.problems:
        print(f"  - {problem}", file=err)
    return EXIT_FAILED
