"""The bundled example's labelled data (examples/breast_cancer/eval.csv), as rows the tests send."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

#: The example's model name (its manifest's ``name``).
EXAMPLE_MODEL = "breast-cancer"


def eval_table(example_dir: Path) -> tuple[list[str], list[list[float]], list[int]]:
    """The feature names, the feature rows and their labels."""
    with (example_dir / "eval.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    t = header.index("target")
    columns = [c for i, c in enumerate(header) if i != t]
    features = [[float(v) for i, v in enumerate(r) if i != t] for r in rows[1:]]
    return columns, features, [int(r[t]) for r in rows[1:]]


def eval_rows(example_dir: Path) -> tuple[list[list[float]], list[int]]:
    """The feature rows and their labels."""
    _, features, labels = eval_table(example_dir)
    return features, labels


def eval_features(example_dir: Path) -> tuple[list[str], list[list[float]]]:
    """The feature names and the feature rows (no labels)."""
    columns, features, _ = eval_table(example_dir)
    return columns, features


def shifted_model(example_dir: Path, tmp_path: Path) -> Path:
    """The example plus fresh labelled data from a shifted input distribution: a training file and a holdout
    file (every feature × 1.6 + 0.5; the champion, fitted before the shift, does worse on it)."""
    d = tmp_path / "model"
    shutil.copytree(example_dir, d)
    with (example_dir / "eval.csv").open() as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    t = header.index("target")
    moved = [[v if i == t else f"{float(v) * 1.6 + 0.5:.6f}" for i, v in enumerate(r)] for r in body]
    for name, part in (("fresh_train.csv", moved[::2] * 2 + moved[1::4]), ("fresh_holdout.csv", moved[1::2])):
        with (d / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(part)
    return d
