"""``modeltui init``: write a ``modeltui.toml`` for a model directory, guessing what it can."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import tomli_w

from daemon.protocol.manifest import MANIFEST_FILE, parse_manifest
from daemon.protocol.names import MODEL_NAME_RE

FLAVOR_BY_SUFFIX = {".skops": "sklearn", ".onnx": "onnx", ".joblib": "sklearn", ".pkl": "sklearn", ".py": "python"}


def _guess_model_file(directory: Path) -> tuple[str, str]:
    for suffix in (".skops", ".onnx", ".joblib", ".pkl"):
        found = sorted(directory.glob(f"*{suffix}"))
        if found:
            return found[0].name, FLAVOR_BY_SUFFIX[suffix]
    return "model.skops", "sklearn"


def _column_type(values: list[str]) -> str:
    def all_parse(kind: type) -> bool:
        try:
            for v in values:
                kind(v)
        except ValueError:
            return False
        return True

    if values and all_parse(int):
        return "long"
    if values and all_parse(float):
        return "double"
    return "string"


def signature_from_csv(path: Path, target: str | None) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Input (and output) columns with types guessed from the first 100 rows of a CSV file."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [row for _, row in zip(range(100), reader, strict=False)]
    cols = {name: [row[i] for row in rows if i < len(row)] for i, name in enumerate(header)}
    inputs = [{"name": n, "type": _column_type(v)} for n, v in cols.items() if n != target]
    outputs = [{"name": "label", "type": _column_type(cols[target])}] if target in cols else []
    return inputs, outputs


def build_manifest(
    directory: Path, *, name: str | None, flavor: str | None, model_file: str | None,
    data: str | None, target: str | None, description: str,
) -> dict[str, Any]:
    guessed_file, guessed_flavor = _guess_model_file(directory)
    model_name = name or directory.resolve().name
    if not MODEL_NAME_RE.fullmatch(model_name):
        model_name = "".join(c if c.isalnum() or c in "._-" else "-" for c in model_name).strip("-._") or "model"
    manifest: dict[str, Any] = {
        "name": model_name,
        "flavor": flavor or guessed_flavor,
        "model_file": model_file or guessed_file,
        "description": description,
        "requirements": [],
        "params": {},
        "metrics": {},
    }
    if (model_file or guessed_file).endswith((".joblib", ".pkl")):
        manifest["trusted"] = False  # pickles load only when an operator marks them trusted
    if data:
        inputs, outputs = signature_from_csv(directory / data, target)
        manifest["signature"] = {"inputs": inputs, "outputs": outputs}
        if target:
            manifest["evaluation"] = {"data": data, "target": target}
    else:
        manifest["signature"] = {"inputs": [], "outputs": []}
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any], *, force: bool) -> Path:
    path = directory / MANIFEST_FILE
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; use --force to overwrite it")
    text = tomli_w.dumps(manifest)
    parse_manifest(text.encode())  # never write a manifest that push would refuse
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
