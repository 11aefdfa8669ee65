"""What a version's manifest and model file make run: the recorded pickle scan, the manifest keys that run
code, and the one line ``show`` gives (daemon/registry/codepolicy.py decides who may run it)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from daemon.protocol import results as r
from daemon.protocol.manifest import Manifest, parse_manifest
from daemon.serving.picklescan import is_pickle_name


def scan_summary(scan: dict[str, Any]) -> str:
    if scan.get("error"):
        return f"refused: {scan['file']} is not a readable pickle ({scan['error']})"
    if scan.get("refused_count"):
        shown = ", ".join(scan["refused"][:3])
        more = f" (and {scan['refused_count'] - 3} more)" if scan["refused_count"] > 3 else ""
        return f"refused: {shown}{more} in {scan['file']}"
    return f"ok ({len(scan.get('globals', []))} globals, all allowed)"


def scan_ok(scan: dict[str, Any]) -> bool:
    return not scan.get("error") and not scan.get("refused_count")


def runs_code(manifest: Manifest, scan: dict[str, Any] | None) -> list[str]:
    """The manifest keys that make code run when this version is served (training is separate)."""
    reasons: list[str] = []
    if manifest.flavor == "python":
        reasons.append(f'flavor = "python" (runs {manifest.model_path})')
    skops = manifest.model_path.lower().endswith(".skops")  # as the runtime picks its loader
    if manifest.trusted is True:
        if is_pickle_name(manifest.model_path):
            if scan is None or not scan_ok(scan):
                found = scan_summary(scan) if scan else "not scanned"
                reasons.append(f"trusted = true on a pickle the scan refused ({found})")
        elif skops:
            reasons.append(f"trusted = true (skops loads every type in {manifest.model_path})")
    elif isinstance(manifest.trusted, list) and manifest.trusted and skops:  # skops loads the listed types too
        listed = ", ".join(manifest.trusted[:3]) + (
            f" and {len(manifest.trusted) - 3} more" if len(manifest.trusted) > 3 else ""
        )
        reasons.append(f"trusted = [{listed}] (skops loads the listed types from {manifest.model_path})")
    return reasons


def code_info(conn: sqlite3.Connection, model_id: int, number: int, manifest_text: str) -> r.CodeInfo:
    """What ``show`` says (from the recorded scan; no scan happens in a read)."""
    row = conn.execute(
        "SELECT c.scan, c.scanned_at, c.approved_by, c.approved_at FROM version_code c "
        "JOIN versions v ON v.id = c.version_id WHERE v.model_id = ? AND v.number = ?",
        (model_id, number),
    ).fetchone()
    scan_json, _scanned_at, approved_by, approved_at = row if row is not None else (None, None, None, None)
    scan = json.loads(scan_json) if scan_json else None
    try:
        manifest = parse_manifest(manifest_text.encode())
    except ValueError:
        return r.CodeInfo()
    pickled = is_pickle_name(manifest.model_path)
    keys = runs_code(manifest, scan)
    if manifest.training is not None:
        keys.append("[training] command")
    return r.CodeInfo(
        pickle_scan=(scan_summary(scan) if scan else "not scanned yet") if pickled else None,
        pickle_ok=(scan_ok(scan) if scan else False) if pickled else None,
        runs_code=keys,
        approved_by=approved_by,
        approved_at=None if approved_at is None else datetime.fromtimestamp(approved_at, UTC),
    )


__all__ = ["code_info", "runs_code", "scan_ok", "scan_summary"]
