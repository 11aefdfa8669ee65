"""Rows → protocol DTOs: the only way data leaves the store package."""

from __future__ import annotations

from collections.abc import Iterable

from daemon.protocol import results as r
from daemon.store.tables import AliasEventRow, FileRow, ModelRow, VersionRow


def model_summary(model: ModelRow, *, versions: int, latest: int | None, aliases: dict[str, int]) -> r.ModelSummary:
    return r.ModelSummary(
        name=model.name,
        description=model.description,
        created_at=model.created_at,
        updated_at=model.updated_at,
        versions=versions,
        latest=latest,
        aliases=dict(sorted(aliases.items())),
    )


def version_summary(row: VersionRow, *, model: str, aliases: Iterable[str]) -> r.VersionSummary:
    return r.VersionSummary(
        model=model,
        number=row.number,
        digest=row.digest,
        parent=row.parent,
        flavor=row.flavor,
        message=row.message,
        tags=dict(row.tags),
        created_by=row.created_by,
        created_at=row.created_at,
        size=row.size,
        file_count=row.file_count,
        aliases=sorted(aliases),
    )


def file_info(row: FileRow) -> r.FileInfo:
    return r.FileInfo(path=row.path, size=row.size, sha256=row.sha256, executable=row.executable)


def version_detail(
    row: VersionRow,
    *,
    model: str,
    aliases: Iterable[str],
    files: Iterable[FileRow],
    children: list[int],
    lineage: list[int],
) -> r.VersionDetail:
    return r.VersionDetail(
        version=version_summary(row, model=model, aliases=aliases),
        description=row.description,
        model_file=row.model_file,
        manifest=row.manifest,
        params=dict(row.params),
        metrics={k: float(v) for k, v in row.metrics.items()},
        signature=dict(row.signature),
        requirements=list(row.requirements),
        source=r.SourceInfo.model_validate(row.source or {}),
        files=[file_info(f) for f in sorted(files, key=lambda f: f.path)],
        children=sorted(children),
        lineage=lineage,
    )


def alias_event(row: AliasEventRow, *, model: str) -> r.AliasEventInfo:
    return r.AliasEventInfo(
        model=model,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        by=row.by,
        at=row.at,
        reason=row.reason,
    )
