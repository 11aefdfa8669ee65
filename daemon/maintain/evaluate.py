"""The evaluation worker: ``python -m daemon.maintain.evaluate --model-dir DIR --data CSV --target COL --metrics M,...``

Started by :func:`daemon.maintain.worker.evaluate`, never imported by the daemon. It loads the model exactly
as the serving runtime does (:func:`daemon.serving.flavors.load_model` with the runtime's manifest reader),
turns the CSV into batches with the runtime's CSV rules (:class:`daemon.serving.schema.Schema`), predicts,
and prints one JSON line ``{"metrics": {...}, "rows": n}`` on stdout. Anything else — including what the
model's own code prints — goes to stderr. When it cannot evaluate, it prints ``modeltui-evaluate: REASON``
on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from daemon.serving.flavors import LoadError, Model, load_model
from daemon.serving.manifest import Column, ManifestError, read_manifest
from daemon.serving.schema import InputError, Schema

PREFIX = "modeltui-evaluate: "
CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION = ("mae", "rmse", "r2")
#: Rows per predict call (the runtime's largest request).
CHUNK = 10_000


class Refused(Exception):
    """Evaluation is impossible; the message says why."""


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m daemon.maintain.evaluate", description="Score a model on a CSV.")
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="CSV with a header, holding the target column")
    ap.add_argument("--target", required=True, help="the label column")
    ap.add_argument("--metrics", required=True, help="comma-separated metric names")
    return ap.parse_args(argv)


def read_data(path: Path, target: str, inputs: tuple[Column, ...]) -> tuple[Schema, list[list[Any]], list[str]]:
    """The schema, the input rows in its column order (converted as the runtime converts CSV) and the targets."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Refused(f"{path} is not UTF-8") from None
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as exc:
        raise Refused(f"{path} is not valid CSV: {exc}") from None
    if not records:
        raise Refused(f"{path} is empty: it needs a header row and data rows")
    header = [h.strip() for h in records[0]]
    rows = records[1:]
    if target not in header:
        shown = ", ".join(repr(h) for h in header[:10]) + (" …" if len(header) > 10 else "")
        raise Refused(f"{path} has no target column {target!r} (its columns: {shown})")
    if len(set(header)) != len(header):
        raise Refused(f"{path}: the header names a column twice")
    if not rows:
        raise Refused(f"{path} has a header but no data rows")
    for i, rec in enumerate(rows):
        if len(rec) != len(header):
            raise Refused(f"{path}: data row {i} has {len(rec)} values; the header has {len(header)}")
    t = header.index(target)
    if inputs:
        missing = [c.name for c in inputs if c.name not in header]
        if missing:
            raise Refused(f"{path} lacks input columns of the model's signature: {', '.join(map(repr, missing[:10]))}")
        if target in {c.name for c in inputs}:
            raise Refused(f"the target column {target!r} is also an input of the model's signature")
        columns = inputs
    else:  # no signature: every other column, in file order, numbers where every value is one
        columns = tuple(
            Column(name, "double" if all(_number(rec[j]) for rec in rows) else "string")
            for j, name in enumerate(header)
            if j != t
        )
    if not columns:
        raise Refused(f"{path} has no input columns besides the target")
    order = [header.index(c.name) for c in columns]
    # The runtime's own CSV path: a body with exactly the input columns.
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    writer.writerows([rec[k] for k in order] for rec in rows)
    schema = Schema(columns, max_rows=len(rows))
    try:
        converted = schema.from_csv(buf.getvalue().encode())
    except InputError as exc:
        raise Refused(f"{path}: {exc.message}") from None
    return schema, converted, [rec[t] for rec in rows]


def _number(text: str) -> bool:
    s = text.strip()
    if not s:
        return True
    try:
        float(s)
    except ValueError:
        return False
    return True


def _label_parser(example: Any) -> Any:
    """A function turning a CSV cell into a label of the same type as ``example`` (a model's label)."""
    if isinstance(example, bool):
        return lambda s: {"true": True, "1": True, "false": False, "0": False}[s.strip().lower()]
    if isinstance(example, int):

        def to_int(s: str) -> int:
            try:
                return int(s.strip())
            except ValueError:
                f = float(s)
                if not f.is_integer():
                    raise ValueError(f"{s!r} is not an integer") from None
                return int(f)

        return to_int
    if isinstance(example, float):
        return lambda s: float(s)
    if isinstance(example, str):
        return lambda s: s
    raise Refused(f"the model's labels are {type(example).__name__}, which a CSV target cannot be compared with")


def convert_targets(cells: list[str], example: Any, target: str) -> list[Any]:
    parse = _label_parser(example)
    out = []
    for i, cell in enumerate(cells):
        try:
            out.append(parse(cell))
        except (ValueError, KeyError):
            kind = type(example).__name__
            raise Refused(
                f"target {target!r}, data row {i}: {cell[:40]!r} is not a label of the model ({kind})"
            ) from None
    return out


def _numbers(values: list[Any], what: str) -> Any:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise Refused(f"{what} are not numbers, which regression metrics need") from None
    if arr.ndim != 1:
        raise Refused(f"{what} are not one number per row")
    return arr


def predict_all(model: Model, schema: Schema, rows: list[list[Any]]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(rows), CHUNK):
        try:
            out.extend(model.predict(schema.to_array(rows[i : i + CHUNK])))
        except MemoryError:
            raise
        except Exception as exc:
            raise Refused(
                f"the model failed to predict rows {i} to {i + CHUNK - 1}: {type(exc).__name__}: {exc}"
            ) from None
    return out


def _estimator(model: Model) -> Any:
    """The object behind ``model.predict`` (a scikit-learn estimator), or None.

    Relies on how daemon.serving.flavors builds a Model: ``_predict`` is the estimator's bound ``predict``, or
    (the fast forest path) a closure over it."""
    fn: Any = model._predict
    owner = getattr(fn, "__self__", None)
    if owner is not None:
        return owner
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            content = cell.cell_contents
        except ValueError:
            continue
        owner = getattr(content, "__self__", None)
        if owner is not None and callable(getattr(owner, "predict", None)):
            return owner
    return None


def roc_auc(model: Model, schema: Schema, rows: list[list[Any]], y_true: list[Any]) -> float:
    from sklearn.metrics import roc_auc_score

    classes = model.classes
    estimator = _estimator(model)
    proba_fn = getattr(estimator, "predict_proba", None)
    if classes is None or len(classes) != 2 or not callable(proba_fn):
        raise Refused("roc_auc needs a binary classifier with predict_proba (scikit-learn classes_ of two labels)")
    parts = [np.asarray(proba_fn(schema.to_array(rows[i : i + CHUNK]))) for i in range(0, len(rows), CHUNK)]
    proba = np.concatenate(parts)
    if proba.ndim != 2 or proba.shape != (len(rows), 2):
        raise Refused(f"predict_proba returned shape {proba.shape}, not (rows, 2)")
    positive = classes[1]
    y = np.asarray([v == positive for v in y_true], dtype=np.int64)
    if y.min() == y.max():
        raise Refused(f"roc_auc is undefined: every target is {'' if y[0] else 'not '}the positive class {positive!r}")
    return float(roc_auc_score(y, proba[:, 1]))


def score(
    model: Model, schema: Schema, rows: list[list[Any]], targets: list[str], target: str, metrics: list[str]
) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        mean_absolute_error,
        mean_squared_error,
        precision_score,
        r2_score,
        recall_score,
    )

    predictions = predict_all(model, schema, rows)
    out: dict[str, float] = {}
    wanted_cls = [m for m in metrics if m in CLASSIFICATION]
    if wanted_cls:
        example = model.classes[0] if model.classes else predictions[0]
        if isinstance(example, list | dict):
            raise Refused("the model does not predict one label per row, which classification metrics need")
        y_true = convert_targets(targets, example, target)
        # Labels of one type on both sides; sklearn refuses a mix (e.g. int targets, str predictions).
        if model.classes is None and any(type(p) is not type(example) for p in predictions):
            raise Refused("the model's predictions are of mixed types")
        yt, yp = np.asarray(y_true), np.asarray(predictions)
        for name in wanted_cls:
            if name == "accuracy":
                out[name] = float(accuracy_score(yt, yp))
            elif name == "precision":
                out[name] = float(precision_score(yt, yp, average="macro", zero_division=0))
            elif name == "recall":
                out[name] = float(recall_score(yt, yp, average="macro", zero_division=0))
            elif name == "f1":
                out[name] = float(f1_score(yt, yp, average="macro", zero_division=0))
            else:
                out[name] = roc_auc(model, schema, rows, y_true)
    wanted_reg = [m for m in metrics if m in REGRESSION]
    if wanted_reg:
        try:
            y = np.asarray([float(c) for c in targets], dtype=np.float64)
        except ValueError:
            raise Refused(
                f"target {target!r} holds values that are not numbers, which regression metrics need"
            ) from None
        p = _numbers(predictions, "the model's predictions")
        if not (np.isfinite(y).all() and np.isfinite(p).all()):
            raise Refused("the targets or predictions include NaN or infinity")
        for name in wanted_reg:
            if name == "mae":
                out[name] = float(mean_absolute_error(y, p))
            elif name == "rmse":
                out[name] = math.sqrt(float(mean_squared_error(y, p)))
            else:
                out[name] = float(r2_score(y, p))
    unknown = [m for m in metrics if m not in out]
    if unknown:
        raise Refused(f"unknown metric {unknown[0]!r}")
    return {m: out[m] for m in metrics}


def run(args: argparse.Namespace) -> dict[str, Any]:
    model_dir: Path = args.model_dir
    metrics = [m for m in str(args.metrics).split(",") if m]
    try:
        manifest = read_manifest(model_dir)
    except ManifestError as exc:
        raise Refused(f"the model's manifest cannot be used: {exc}") from None
    schema, rows, targets = read_data(args.data, args.target, manifest.inputs)
    try:
        model = load_model(model_dir, manifest)
    except LoadError as exc:
        raise Refused(f"cannot load the model: {exc}") from None
    try:
        values = score(model, schema, rows, targets, args.target, metrics)
    except (ValueError, TypeError) as exc:  # scikit-learn refusing the labels, say
        raise Refused(f"cannot compute the metrics: {type(exc).__name__}: {exc}") from None
    return {"metrics": values, "rows": len(rows)}


def serve(work: Callable[[], dict[str, Any]], prefix: str) -> int:
    """The workers' protocol: ``work()``'s answer as one JSON line on the real stdout, exit 0; a
    :class:`Refused` as ``PREFIX reason`` on stderr, exit 2. Everything else that writes to fd 1 (model
    code, C libraries) lands on stderr, in the run's log."""
    result = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        answer = work()
    except Refused as exc:
        print(prefix + str(exc), file=sys.stderr, flush=True)
        return 2
    result.write(json.dumps(answer) + "\n")
    result.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve(lambda: run(_args(argv)), PREFIX)


if __name__ == "__main__":
    raise SystemExit(main())
