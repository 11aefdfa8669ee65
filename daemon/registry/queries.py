"""Lookups shared by the registry's operations, with NOT_FOUND messages that say what exists instead."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func
from sqlmodel import Session, col, select

from daemon.protocol import results as r
from daemon.protocol.errors import not_found
from daemon.protocol.names import Ref
from daemon.store.tables import AliasEventRow, AliasRow, FileRow, ModelRow, VersionRow

from . import convert


def find_model(s: Session, name: str) -> ModelRow | None:
    return s.exec(select(ModelRow).where(ModelRow.name == name)).first()


def get_model(s: Session, name: str) -> ModelRow:
    model = find_model(s, name)
    if model is None:
        raise not_found(f"no model named {name!r}", model=name)
    return model


def model_id(model: ModelRow) -> int:
    assert model.id is not None, "rows read from the database have ids"
    return model.id


def latest_version(s: Session, mid: int) -> VersionRow | None:
    return s.exec(select(VersionRow).where(VersionRow.model_id == mid).order_by(col(VersionRow.number).desc())).first()


def get_version(s: Session, model: ModelRow, number: int) -> VersionRow:
    row = s.exec(select(VersionRow).where(VersionRow.model_id == model_id(model), VersionRow.number == number)).first()
    if row is None:
        latest = latest_version(s, model_id(model))
        tail = f"latest is {latest.number}" if latest else "it has no versions"
        raise not_found(f"model {model.name!r} has no version {number}; {tail}", model=model.name)
    return row


def find_alias(s: Session, mid: int, alias: str) -> AliasRow | None:
    return s.exec(select(AliasRow).where(AliasRow.model_id == mid, AliasRow.name == alias)).first()


def alias_map(s: Session, mid: int) -> dict[str, int]:
    return {a.name: a.version for a in s.exec(select(AliasRow).where(AliasRow.model_id == mid))}


def aliases_by_version(s: Session, mid: int) -> dict[int, list[str]]:
    found: dict[int, list[str]] = defaultdict(list)
    for name, number in alias_map(s, mid).items():
        found[number].append(name)
    return found


def resolve(s: Session, ref: Ref) -> tuple[ModelRow, VersionRow]:
    """``NAME`` → latest, ``NAME:N``, ``NAME@alias``."""
    model = get_model(s, ref.name)
    if ref.number is not None:
        return model, get_version(s, model, ref.number)
    if ref.alias is not None:
        alias = find_alias(s, model_id(model), ref.alias)
        if alias is None:
            known = ", ".join(sorted(alias_map(s, model_id(model)))) or "none"
            raise not_found(f"model {model.name!r} has no alias {ref.alias!r} (aliases: {known})", model=model.name)
        return model, get_version(s, model, alias.version)
    latest = latest_version(s, model_id(model))
    if latest is None:
        raise not_found(f"model {model.name!r} has no versions", model=model.name)
    return model, latest


def files_of(s: Session, version: VersionRow) -> list[FileRow]:
    return list(s.exec(select(FileRow).where(FileRow.version_id == version.id).order_by(col(FileRow.path))))


def summary(s: Session, model: ModelRow, version: VersionRow) -> r.VersionSummary:
    aliases = aliases_by_version(s, model_id(model)).get(version.number, [])
    return convert.version_summary(version, model=model.name, aliases=aliases)


def latest_event(s: Session, mid: int, alias: str) -> AliasEventRow | None:
    return s.exec(
        select(AliasEventRow)
        .where(AliasEventRow.model_id == mid, AliasEventRow.alias == alias)
        .order_by(col(AliasEventRow.at).desc(), col(AliasEventRow.id).desc())
    ).first()


def count(s: Session, table: type[ModelRow] | type[VersionRow]) -> int:
    return int(s.exec(select(func.count()).select_from(table)).one())
