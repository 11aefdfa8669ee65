"""Train the breast-cancer example model and write a complete modeltui model directory.

    python train.py --out DIR [--data CSV] [--C C]

Without ``--data`` the training data is scikit-learn's bundled ``load_breast_cancer`` (no download). With
``--data``, CSV is a file with the 30 feature columns and a ``target`` column (0 = malignant, 1 = benign),
e.g. an ``eval.csv`` written by this script plus new labelled rows. Either way the rows are split 75/25
(stratified, fixed seed); the model is fitted on the 75 %, and the 25 % is written to ``DIR/eval.csv`` and
used for the metrics recorded in ``DIR/modeltui.toml``. From the bundled data the 75 % is also written to
``DIR/train.csv`` (same columns), the file a maintenance policy names as its training data
(``modeltui maintain set breast-cancer data=train.csv``). ``--C`` is the logistic regression's inverse
regularisation strength (default 1.0). The run is deterministic for the same input.

This is also the model's training command for modeltui's maintenance (``[training]`` in the manifest).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
NAME = "breast-cancer"
TARGET = "target"
SEED = 0
TEST_SIZE = 0.25
C = 1.0
MAX_ITER = 1000
SOLVER = "lbfgs"
DESCRIPTION = (
    "Breast cancer (Wisconsin diagnostic) classifier: StandardScaler + LogisticRegression on 30 numeric "
    "features; label 0 = malignant, 1 = benign."
)
#: Pinned in the manifest at the versions this script ran with.
REQUIREMENTS = ("scikit-learn", "skops", "numpy")
#: Files copied next to the model so that the output directory is itself a complete, re-trainable model.
COMPANIONS = ("train.py", "README.md")


def feature_names() -> list[str]:
    return [str(n) for n in load_breast_cancer().feature_names]


def load_data(path: Path | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = feature_names()
    if path is None:
        ds = load_breast_cancer()
        return ds.data.astype(np.float64), ds.target.astype(np.int64), names
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        missing = [c for c in [*names, TARGET] if c not in header]
        if missing:
            sys.exit(f"{path}: missing columns: {', '.join(missing)}")
        idx = [header.index(c) for c in names]
        t = header.index(TARGET)
        rows = [r for r in reader if r]
    x = np.array([[float(r[i]) for i in idx] for r in rows], dtype=np.float64)
    y = np.array([int(float(r[t])) for r in rows], dtype=np.int64)
    return x, y, names


def build(c: float = C) -> Pipeline:
    return Pipeline(
        [
            ("scaler", StandardScaler()),
            ("clf", LogisticRegression(C=c, max_iter=MAX_ITER, solver=SOLVER, random_state=SEED)),
        ]
    )


def canonical_skops(data: bytes) -> bytes:
    """skops names objects by ``id()``, so two identical fits give different bytes. Renumber the ids in order
    of first appearance and write the zip with sorted entries and a fixed timestamp: the same model then
    gives the same file, and modeltui sees an unchanged version when nothing changed."""
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = src.read("schema.json").decode()
    ids: dict[str, str] = {}
    for m in re.finditer(r'"__id__": (\d+)|"file": "(\d+)\.npy"', schema):
        ids.setdefault(m.group(1) or m.group(2), str(len(ids) + 1))
    schema = re.sub(r'("__id__": )(\d+)', lambda m: m.group(1) + ids[m.group(2)], schema)
    schema = re.sub(r'("file": ")(\d+)(\.npy")', lambda m: m.group(1) + ids[m.group(2)] + m.group(3), schema)
    entries = {"schema.json": schema.encode()}
    for name in src.namelist():
        if name != "schema.json":
            stem = name.removesuffix(".npy")
            entries[ids[stem] + ".npy" if name.endswith(".npy") and stem in ids else name] = src.read(name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, entries[name])
    return buf.getvalue()


def write_eval(path: Path, names: list[str], x: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([*names, TARGET])
        for row, label in zip(x, y, strict=True):
            w.writerow([repr(float(v)) for v in row] + [int(label)])


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(i) for i in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(i)}" for k, i in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def render_manifest(names: list[str], metrics: dict[str, float], old: dict[str, object], c: float = C) -> str:
    """The manifest text. Name, description and any maintenance policy of an existing one are kept."""
    params = {
        "estimator": "LogisticRegression",
        "scaler": "StandardScaler",
        "C": c,
        "solver": SOLVER,
        "max_iter": MAX_ITER,
        "random_state": SEED,
        "test_size": TEST_SIZE,
    }
    lines = [
        f"name = {_toml_value(old.get('name', NAME))}",
        'flavor = "sklearn"',
        'model_file = "model.skops"',
        f"description = {_toml_value(old.get('description', DESCRIPTION))}",
        f"requirements = {_toml_value([f'{pkg}=={version(pkg)}' for pkg in REQUIREMENTS])}",
        "",
        "[signature]",
        "inputs = [",
        *(f"    {_toml_value({'name': n, 'type': 'double'})}," for n in names),
        "]",
        'outputs = [{ name = "label", type = "long" }]',
        "",
        "[params]",
        *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in params.items()),
        "",
        "[metrics]",
        *(f"{k} = {_toml_value(round(v, 6))}" for k, v in metrics.items()),
        "",
        "[evaluation]",
        'data = "eval.csv"',
        f'target = "{TARGET}"',
        "",
        "[training]",
        'command = "python train.py --data {data} --out {output}"',
    ]
    maintenance = old.get("maintenance")
    if isinstance(maintenance, dict) and maintenance:
        lines += ["", "[maintenance]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in maintenance.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="model directory to write (created if missing)")
    ap.add_argument("--data", type=Path, default=None, help="labelled CSV (30 features + target)")
    ap.add_argument("--C", dest="c", type=float, default=C, help="inverse regularisation strength (default 1.0)")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    x, y, names = load_data(args.data)
    x_train, x_eval, y_train, y_eval = train_test_split(x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y)
    model = build(args.c).fit(x_train, y_train)
    pred = model.predict(x_eval)
    # Macro averages, as modeltui's monitoring and maintenance score every model: a challenger's recorded
    # metrics then compare with these in `modeltui diff`.
    metrics = {
        "accuracy": float(accuracy_score(y_eval, pred)),
        "precision": float(precision_score(y_eval, pred, average="macro")),
        "recall": float(recall_score(y_eval, pred, average="macro")),
        "f1": float(f1_score(y_eval, pred, average="macro")),
    }

    blob = canonical_skops(sio.dumps(model))
    # Check the file loads back with skops' default trusted types only (what the serving runtime does) and
    # predicts exactly what the fitted model does.
    untrusted = sio.get_untrusted_types(data=blob)
    if untrusted:
        sys.exit(f"model.skops needs untrusted types: {untrusted}")
    if not np.array_equal(sio.loads(blob).predict(x_eval), pred):
        sys.exit("model.skops does not round-trip")
    (out / "model.skops").write_bytes(blob)
    write_eval(out / "eval.csv", names, x_eval, y_eval)
    if args.data is None:  # the rows it was fitted on: training data for a maintenance policy
        write_eval(out / "train.csv", names, x_train, y_train)

    manifest_path = out / "modeltui.toml"
    source = manifest_path if manifest_path.exists() else HERE / "modeltui.toml"
    old = tomllib.loads(source.read_text()) if source.exists() else {}
    manifest_path.write_text(render_manifest(names, metrics, old, args.c))
    for name in COMPANIONS:
        src, dst = HERE / name, out / name
        if src.exists() and src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)

    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()), f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
