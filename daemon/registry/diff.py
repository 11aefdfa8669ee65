"""Compare two versions: files, params, metrics, signature columns, requirements and flavor."""

from __future__ import annotations

from typing import Any

from daemon.protocol import results as r
from daemon.store.tables import FileRow, VersionRow


def _files(a: list[FileRow], b: list[FileRow]) -> tuple[list[r.FileChange], int]:
    fa = {f.path: f for f in a}
    fb = {f.path: f for f in b}
    changes: list[r.FileChange] = []
    unchanged = 0
    for path in sorted(fa.keys() | fb.keys()):
        x, y = fa.get(path), fb.get(path)
        if x is not None and y is not None and (x.sha256, x.executable) == (y.sha256, y.executable):
            unchanged += 1
            continue
        status = "added" if x is None else "removed" if y is None else "changed"
        changes.append(
            r.FileChange(
                path=path,
                status=status,
                size_a=x.size if x else None,
                size_b=y.size if y else None,
                sha256_a=x.sha256 if x else None,
                sha256_b=y.sha256 if y else None,
            )
        )
    return changes, unchanged


def _same(x: Any, y: Any) -> bool:
    """Equal and of the same type: a param going from 1 to true or 1.0 is a change."""
    return type(x) is type(y) and x == y


def _values(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[r.ValueChange]:
    return [
        r.ValueChange(key=prefix + k, a=a.get(k), b=b.get(k))
        for k in sorted(a.keys() | b.keys())
        if (k in a) != (k in b) or not _same(a.get(k), b.get(k))
    ]


def _metrics(a: dict[str, float], b: dict[str, float]) -> list[r.MetricChange]:
    """Every metric of either version (comparing them is the point), with delta = b − a when both exist."""
    out = []
    for k in sorted(a.keys() | b.keys()):
        x, y = a.get(k), b.get(k)
        delta = y - x if x is not None and y is not None else None
        out.append(r.MetricChange(key=k, a=x, b=y, delta=delta))
    return out


def _columns(signature: dict[str, Any], side: str) -> dict[str, Any]:
    return {c["name"]: c.get("type") for c in signature.get(side, [])}


def _signature(a: dict[str, Any], b: dict[str, Any]) -> list[r.ValueChange]:
    out: list[r.ValueChange] = []
    for side in ("inputs", "outputs"):
        out += _values(_columns(a, side), _columns(b, side), prefix=f"{side}.")
    return out


def diff_versions(
    a: VersionRow,
    a_files: list[FileRow],
    a_summary: r.VersionSummary,
    b: VersionRow,
    b_files: list[FileRow],
    b_summary: r.VersionSummary,
) -> r.VersionDiff:
    files, unchanged = _files(a_files, b_files)
    req_a, req_b = set(a.requirements), set(b.requirements)
    return r.VersionDiff(
        a=a_summary,
        b=b_summary,
        files=files,
        unchanged_files=unchanged,
        params=_values(a.params, b.params),
        metrics=_metrics(a.metrics, b.metrics),
        signature=_signature(a.signature, b.signature),
        requirements_added=sorted(req_b - req_a),
        requirements_removed=sorted(req_a - req_b),
        flavor=None if a.flavor == b.flavor else r.ValueChange(key="flavor", a=a.flavor, b=b.flavor),
    )
