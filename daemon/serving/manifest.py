"""The few manifest fields the runtime needs, parsed with tomllib and validated here (no pydantic)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_FILE = "modeltui.toml"
MAX_MANIFEST_BYTES = 256 * 1024
FLAVORS = ("sklearn", "onnx", "python")
COLUMN_TYPES = ("double", "float", "long", "integer", "boolean", "string")
MAX_INPUTS = 10_000


#: A dotted Python type name, as skops reports untrusted types.
TYPE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
MAX_TRUSTED_TYPES = 100


class ManifestError(ValueError):
    """The manifest cannot be served; the message says which field is wrong."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class ServingManifest:
    name: str
    flavor: str
    model_file: str
    trusted: bool | tuple[str, ...]
    """True trusts the file entirely; a tuple names the only extra types skops may load (a reviewed list)."""
    inputs: tuple[Column, ...]
    outputs: tuple[Column, ...]
    evaluation_data: str | None = None
    """``[evaluation] data``: a CSV file in the model directory, the reference for input-drift metrics."""


def _columns(raw: Any, where: str, limit: int) -> tuple[Column, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ManifestError(f"{MANIFEST_FILE}: {where} must be a list of {{name, type}} tables")
    if len(raw) > limit:
        raise ManifestError(f"{MANIFEST_FILE}: {where} has {len(raw)} columns; the limit is {limit}")
    cols: list[Column] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ManifestError(f"{MANIFEST_FILE}: {where}[{i}] must be a table with name and type")
        name = item.get("name")
        ctype = item.get("type", "double")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise ManifestError(f"{MANIFEST_FILE}: {where}[{i}].name must be a string of 1 to 256 characters")
        if ctype not in COLUMN_TYPES:
            raise ManifestError(
                f"{MANIFEST_FILE}: {where}[{i}].type must be one of {', '.join(COLUMN_TYPES)}, not {ctype!r:.40}"
            )
        if name in seen:
            raise ManifestError(f"{MANIFEST_FILE}: {where}: column {name!r:.60} appears twice")
        seen.add(name)
        cols.append(Column(name, ctype))
    return tuple(cols)


def parse_manifest(data: bytes) -> ServingManifest:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{MANIFEST_FILE} is {len(data)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{MANIFEST_FILE} is not UTF-8: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{MANIFEST_FILE} is not valid TOML: {exc}") from None
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > 128:
        raise ManifestError(f"{MANIFEST_FILE}: name must be a non-empty string")
    flavor = raw.get("flavor")
    if flavor not in FLAVORS:
        raise ManifestError(f"{MANIFEST_FILE}: flavor must be one of {', '.join(FLAVORS)}, not {flavor!r:.40}")
    model_file = raw.get("model_file")
    if not isinstance(model_file, str) or not model_file:
        raise ManifestError(f"{MANIFEST_FILE}: model_file must be a non-empty string")
    trusted = raw.get("trusted", False)
    if isinstance(trusted, list):
        if len(trusted) > MAX_TRUSTED_TYPES or not all(
            isinstance(t, str) and TYPE_NAME_RE.fullmatch(t) for t in trusted
        ):
            raise ManifestError(
                f"{MANIFEST_FILE}: trusted must be true, false or a list of at most {MAX_TRUSTED_TYPES} "
                'dotted type names such as "sklearn.tree._tree.Tree"'
            )
        trusted = tuple(trusted)
    elif not isinstance(trusted, bool):
        raise ManifestError(f"{MANIFEST_FILE}: trusted must be true, false or a list of type names")
    sig = raw.get("signature", {})
    if not isinstance(sig, dict):
        raise ManifestError(f"{MANIFEST_FILE}: [signature] must be a table")
    inputs = _columns(sig.get("inputs"), "signature.inputs", MAX_INPUTS)
    outputs = _columns(sig.get("outputs"), "signature.outputs", 1_000)
    evaluation = raw.get("evaluation")
    data_file = evaluation.get("data") if isinstance(evaluation, dict) else None
    # Lenient on purpose: the registry validates [evaluation] at push time; here it only enables drift metrics.
    evaluation_data = data_file if isinstance(data_file, str) and data_file else None
    return ServingManifest(str(name), str(flavor), model_file, trusted, inputs, outputs, evaluation_data)


def read_manifest(model_dir: Path) -> ServingManifest:
    path = model_dir / MANIFEST_FILE
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_manifest(data)


def resolve_inside(model_dir: Path, rel: str, what: str = "model_file") -> Path:
    """``model_dir / rel``, refusing absolute paths and anything that leaves the directory."""
    if not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel:
        raise ManifestError(f"{MANIFEST_FILE}: {what} must be a relative path inside the model directory")
    root = model_dir.resolve()
    path = (root / rel).resolve()
    if path != root and root not in path.parents:
        raise ManifestError(f"{MANIFEST_FILE}: {what} {rel!r:.80} leaves the model directory")
    return path
