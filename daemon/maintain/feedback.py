"""The deployments' labelled feedback as training and holdout data.

A serving runtime keeps the inputs of the rows it received labels for (``GET /feedback/rows`` on its admin
port, ``daemon/serving``), in memory and per process. The daemon pulls them every
:data:`PULL_SECONDS` (and when a run starts) for the models whose policy trains or evaluates on
``feedback``, and keeps the newest :data:`KEEP_ROWS` per model in SQLite (``feedback_rows``, migration v10),
so they outlive runtime restarts and rollouts. Rows and the cursor that says how far a runtime was read
are written in one transaction: a crash re-reads, never loses nor doubles. Rows a runtime held but the daemon
had not pulled yet are lost when that runtime stops.

A run writes them as CSV files — the champion's signature inputs, then the target column — newest last:
the newest ``holdout_fraction`` is the holdout when ``holdout = "feedback"``, the rest the training data.
"""

from __future__ import annotations

import csv
import json
import math
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.serving.auth import bearer

#: How often the daemon pulls labelled rows from the runtimes of models that train on feedback.
PULL_SECONDS = 15.0
#: Labelled rows kept per model (oldest dropped).
KEEP_ROWS = 100_000
#: Rows asked for per request, and requests per runtime per pull.
PAGE_ROWS = 10_000
MAX_PAGES = 20
#: Bytes a page may take (10,000 rows of 1,000 features would be far more; such rows are paged smaller).
MAX_PAGE_BYTES = 64 * 1024 * 1024
TIMEOUT_S = 5.0

Scalar = bool | int | float | str | None


@dataclass(frozen=True)
class Source:
    """A runtime serving one of the model's deployments."""

    deployment: str
    version: int
    admin_url: str
    token: str | None = None
    """The deployment's admin token (``GET /feedback/rows`` needs it)."""


class Page(BaseModel):
    """One answer of ``GET /feedback/rows`` (validated: a runtime is a peer, not trusted)."""

    model_config = ConfigDict(extra="ignore")

    instance: Annotated[str, Field(min_length=1, max_length=64)]
    columns: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=10_000)]
    rows: Annotated[list[tuple[int, float, list[Scalar], Scalar]], Field(max_length=PAGE_ROWS)]
    first: int
    last: int


@dataclass(frozen=True)
class Labelled:
    """One labelled row: when, which inputs (by column name) and the label."""

    at: float
    inputs: dict[str, Scalar]
    label: Scalar


Rows = list[Labelled]


def fetch(source: Source, after: int, limit: int = PAGE_ROWS) -> Page:
    """One page of the runtime's labelled rows after ``after``; blocking. Raises OSError or ValueError."""
    query = urllib.parse.urlencode({"after": after, "limit": limit})
    req = urllib.request.Request(f"{source.admin_url}/feedback/rows?{query}", headers=bearer(source.token))
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
        body = resp.read(MAX_PAGE_BYTES + 1)
    if len(body) > MAX_PAGE_BYTES:
        raise ValueError(f"{source.deployment}: the feedback page is larger than {MAX_PAGE_BYTES} bytes")
    try:
        page = Page.model_validate_json(body)
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        raise ValueError(f"{source.deployment}: the runtime's feedback rows are malformed: {why}") from None
    for seq, _at, inputs, _label in page.rows:
        if len(inputs) != len(page.columns):
            shape = f"{len(inputs)} inputs, not {len(page.columns)}"
            raise ValueError(f"{source.deployment}: feedback row {seq} has {shape}")
    return page


def to_labelled(page: Page) -> list[Labelled]:
    return [Labelled(at, dict(zip(page.columns, inputs, strict=True)), label) for _seq, at, inputs, label in page.rows]


def complete(row: Labelled, inputs: list[str]) -> bool:
    """The row has a label and every input column (a version with another signature may have made it)."""
    return row.label is not None and all(name in row.inputs for name in inputs)


def write_csv(rows: list[Labelled], inputs: list[str], target: str, path: Path) -> None:
    """Complete rows as CSV: inputs in ``inputs`` order, then ``target``. Missing values (null, NaN) are empty
    cells, as the runtime reads them."""
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*inputs, target])
        out.writerows([_cell(row.inputs[name]) for name in inputs] + [_cell(row.label)] for row in rows)


def _cell(value: Scalar) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def target_name(target: str | None, inputs: list[str]) -> str:
    """The label column's name in the CSV files: the policy's ``target``, else ``label`` (never an input's)."""
    name = target or "label"
    while name in inputs:
        name = f"_{name}"
    return name


def encode(row: Labelled) -> tuple[float, str, str]:
    return row.at, json.dumps(row.inputs, allow_nan=False, default=str), json.dumps(row.label)


def decode(at: float, inputs: str, label: str) -> Labelled:
    return Labelled(at, json.loads(inputs), json.loads(label))
