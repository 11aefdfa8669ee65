"""``modeltui feedback TARGET FILE``: send ground-truth labels that arrived late to a deployment.

TARGET is found exactly like ``modeltui predict`` finds it (:func:`modeltui.cli.deployments.find_deployment`: a
deployment name, else the running deployment of a ref). FILE is one of:

* CSV (``.csv``) with a header row that has an ``id`` and a ``label`` column (other columns are ignored);
* JSON Lines (``.jsonl``, ``.ndjson``, ``.json``) with one ``{"id": "...", "label": ...}`` object per line
  (other keys are ignored; the label is a string, number or boolean and is sent as it is).

Another suffix is read as JSON Lines when its first non-blank character is ``{``, else as CSV. Blank lines
are skipped. The whole file is validated before anything is sent (UTF-8, the header, every line, ids are
non-empty strings that appear once, at most :data:`MAX_LINES` labels): a problem exits 4 with the line
number and nothing reaches the deployment. The labels then go to the deployment's ``/feedback`` in
chunks of :data:`CHUNK` (``{"items": [...]}``), and the totals of ``matched`` / ``unknown`` are printed.

CSV labels and the predictions' type: the runtime compares a label with the predicted class by their text
(``metrics.feedback_key``): an int prediction ``1`` is class ``"1"``, and so are the labels ``1``,
``1.0`` and ``"1"``, but the CSV cell ``1.0``, ``01`` or `` 1`` sent as a string would be the different
class ``"1.0"``. So when the served version's signature declares a numeric output (long/integer, or
double/float) a CSV label that reads as a number is sent as a number — an int when it is integral — and it
matches the prediction whatever its spelling; a boolean output turns ``true``/``false`` (any case) into
booleans. With a string output, or no declared output, CSV labels are sent as the strings they are (a
string class ``"01"`` must stay distinct from ``"1"``); canonical integers like ``1`` still match int
predictions then, by the text comparison above. JSON labels are never converted: JSON already has types.
"""

from __future__ import annotations

import csv
import http.client
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import click

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.deploy import DeploymentInfo
from daemon.protocol.errors import EXIT_CODES, ErrorCode, ProtocolError

from ..client import DaemonClient
from .common import emit, err, fail, json_option, main, out, run
from .deployments import EndpointAccess, endpoint_access, find_deployment

MAX_LINES = 1_000_000
CHUNK = 1000
MAX_ID_LENGTH = 256
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
NUMERIC_OUTPUTS = ("long", "integer", "double", "float")


class FeedbackFileError(Exception):
    """The feedback file is not valid; the message names the line."""


Item = dict[str, Any]


def _lines(fh: BinaryIO, name: str) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line, decoded as UTF-8 (a BOM at the start is dropped)."""
    for lineno, raw in enumerate(fh, 1):
        try:
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError:
            raise FeedbackFileError(f"{name} line {lineno}: not UTF-8 text") from None
        yield lineno, text


def _check_id(where: str, value: Any, seen: dict[str, int], lineno: int) -> str:
    if type(value) is not str:
        shown = "null" if value is None else type(value).__name__
        raise FeedbackFileError(f"{where}: id must be a string (a prediction id), not {shown}")
    if not value:
        raise FeedbackFileError(f"{where}: id is empty")
    if len(value) > MAX_ID_LENGTH:
        raise FeedbackFileError(f"{where}: id is longer than {MAX_ID_LENGTH} characters")
    first = seen.setdefault(value, lineno)
    if first != lineno:
        raise FeedbackFileError(f"{where}: id {value!r:.60} already has a label on line {first}")
    return value


def _too_many(name: str) -> FeedbackFileError:
    return FeedbackFileError(f"{name} has more than {MAX_LINES:,} labels; split it into smaller files")


def read_jsonl(fh: BinaryIO, name: str) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for lineno, text in _lines(fh, name):
        if not text.strip():
            continue
        where = f"{name} line {lineno}"
        if len(items) >= MAX_LINES:
            raise _too_many(name)
        try:
            obj = json.loads(text)
        except RecursionError:
            raise FeedbackFileError(f"{where}: JSON nested too deeply") from None
        except ValueError as exc:
            raise FeedbackFileError(f"{where}: not valid JSON: {exc}") from None
        if type(obj) is not dict:
            raise FeedbackFileError(f'{where}: expected an object {{"id": ..., "label": ...}}')
        for key in ("id", "label"):
            if key not in obj:
                raise FeedbackFileError(f"{where}: no {key!r} key")
        pid = _check_id(where, obj["id"], seen, lineno)
        label = obj["label"]
        if label is None or type(label) not in (str, int, float, bool):
            raise FeedbackFileError(f"{where}: label must be a string, number or boolean")
        if type(label) is float and not math.isfinite(label):
            raise FeedbackFileError(f"{where}: label must be a finite number")
        if label == "":
            raise FeedbackFileError(f"{where}: label is empty")
        items.append({"id": pid, "label": label})
    return items


def read_csv(fh: BinaryIO, name: str) -> list[Item]:
    numbers: list[int] = []

    def texts() -> Iterator[str]:
        for lineno, text in _lines(fh, name):
            numbers.append(lineno)
            yield text

    reader = csv.reader(texts())
    items: list[Item] = []
    seen: dict[str, int] = {}
    header: list[str] | None = None
    id_col = label_col = 0
    try:
        for rec in reader:
            lineno = numbers[-1] if numbers else 0
            if not rec or not any(field.strip() for field in rec):
                continue
            where = f"{name} line {lineno}"
            if header is None:
                header = [h.strip() for h in rec]
                missing = [c for c in ("id", "label") if c not in header]
                if missing:
                    raise FeedbackFileError(
                        f"{where}: the header must name the columns id and label; missing {' and '.join(missing)}"
                    )
                id_col, label_col = header.index("id"), header.index("label")
                continue
            if len(items) >= MAX_LINES:
                raise _too_many(name)
            if len(rec) != len(header):
                raise FeedbackFileError(f"{where}: {len(rec)} fields; the header has {len(header)}")
            pid = _check_id(where, rec[id_col].strip(), seen, lineno)
            label = rec[label_col].strip()
            if not label:
                raise FeedbackFileError(f"{where}: label is empty")
            items.append({"id": pid, "label": label})
    except csv.Error as exc:
        raise FeedbackFileError(f"{name} line {numbers[-1] if numbers else 1}: malformed CSV: {exc}") from None
    if header is None:
        raise FeedbackFileError(f"{name} is empty: expected a header with id and label, then one line per label")
    return items


def read_feedback(path: Path) -> tuple[str, list[Item]]:
    """("csv" | "jsonl", items) of a whole feedback file, validated; raises :class:`FeedbackFileError`."""
    name = path.name
    with path.open("rb") as fh:
        head = fh.read(4096)
        if not head.strip():
            raise FeedbackFileError(f"{name} is empty")
        fh.seek(0)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            kind = "csv"
        elif suffix in JSONL_SUFFIXES:
            kind = "jsonl"
        else:
            kind = "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"
        items = read_jsonl(fh, name) if kind == "jsonl" else read_csv(fh, name)
    if not items:
        raise FeedbackFileError(f"{name} holds no labels")
    return kind, items


def typed_label(text: str, output_type: str | None) -> Any:
    """A CSV label converted to the type of the version's declared output (see the module docstring)."""
    if output_type in NUMERIC_OUTPUTS:
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return text  # not a number: a class the model never predicts, sent as it is
        if not math.isfinite(number):
            return text
        return int(number) if number.is_integer() else number
    if output_type == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def output_type(signature: dict[str, Any]) -> str | None:
    """The type of the first declared output of a version's signature, if any."""
    outputs = signature.get("outputs")
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        kind = outputs[0].get("type", "double")
        return kind if isinstance(kind, str) else None
    return None


def _post(conn: http.client.HTTPConnection, path: str, items: list[Item], token: str | None) -> tuple[int, Any]:
    body = json.dumps({"items": items}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, {"message": data[:300].decode(errors="replace")}


def send_labels(d: DeploymentInfo, items: list[Item], access: EndpointAccess | None = None) -> tuple[int, int]:
    """POST ``items`` to the deployment's ``/feedback`` in chunks of :data:`CHUNK`: (matched, unknown). A
    deployment that does not answer, or refuses a chunk, ends the command saying how many were sent."""
    url = urlsplit(d.endpoint or "")
    access = access or EndpointAccess()
    host = url.hostname or "127.0.0.1"
    conn = (
        http.client.HTTPSConnection(host, url.port or 443, timeout=60, context=access.tls)
        if url.scheme == "https"
        else http.client.HTTPConnection(host, url.port or 80, timeout=60)
    )
    token = access.token
    path = url.path.rstrip("/") + "/feedback"
    matched = unknown = sent = 0
    try:
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            try:
                status, answer = _post(conn, path, chunk, token)
            except (OSError, http.client.HTTPException) as exc:
                fail(
                    f"{d.name} at {d.endpoint} did not answer: {exc}; {sent} of {len(items)} labels were sent",
                    EXIT_CODES[ErrorCode.UNAVAILABLE],
                )
            if status != 200 or not isinstance(answer, dict):
                message = answer.get("message", answer) if isinstance(answer, dict) else answer
                fail(
                    f"{d.name} answered {status}: {message}; {sent} of {len(items)} labels were sent "
                    f"(lines of the chunk starting at label {start + 1} were not)",
                    EXIT_CODES[ErrorCode.INVALID if status < 500 else ErrorCode.UNAVAILABLE],
                )
            matched += int(answer.get("matched", 0))
            unknown += int(answer.get("unknown", 0))
            sent += len(chunk)
    finally:
        conn.close()
    return matched, unknown


@main.command()
@click.argument("target", metavar="DEPLOYMENT|REF")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@json_option
@click.pass_context
def feedback(ctx: click.Context, target: str, file: Path, as_json: bool) -> None:
    """Send the true labels in FILE (CSV with id,label columns, or JSONL of {"id", "label"} objects) for
    predictions made by the deployment serving TARGET; print how many matched a remembered prediction."""
    try:
        kind, items = read_feedback(file)
    except FeedbackFileError as exc:
        fail(f"{exc}; nothing was sent", EXIT_CODES[ErrorCode.INVALID])
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", EXIT_CODES[ErrorCode.INVALID])

    async def body(c: DaemonClient) -> tuple[r.DeploymentDetail, EndpointAccess, str | None]:
        detail = await find_deployment(c, target)
        d = detail.deployment
        access = await endpoint_access(c, d.name)
        if kind != "csv" or d.version is None:
            return detail, access, None
        try:
            version = await c.call(q.Show(ref=f"{d.model}:{d.version}"))
        except ProtocolError:
            return detail, access, None  # the version is gone from the registry: send the labels as strings
        return detail, access, output_type(version.signature)

    detail, access, out_type = run(ctx, body)
    d = detail.deployment
    if not d.endpoint:
        fail(f"deployment {d.name} is {d.state}, not serving: {d.message}", EXIT_CODES[ErrorCode.UNAVAILABLE])
    if kind == "csv":
        for item in items:
            item["label"] = typed_label(item["label"], out_type)
    matched, unknown = send_labels(d, items, access)
    sent = len(items)
    result = {
        "deployment": d.name,
        "version": d.version,
        "file": str(file),
        "format": kind,
        "sent": sent,
        "matched": matched,
        "unknown": unknown,
    }

    def human() -> None:
        out.print(f"{d.name} (v{d.version}): {sent} labels sent, {matched} matched, {unknown} unknown")
        if unknown:
            err.print(
                "unknown: ids this instance does not remember (older than its last 100,000 predictions, "
                "from another instance or run, or already labelled)"
            )

    emit(result, as_json, human)


__all__ = ["feedback", "read_feedback", "typed_label"]
