"""The built-in hyper-parameter search (halving, through its worker) against a plain RandomizedSearchCV.

    .venv/bin/python bench/maintenance/search.py [--rows 20000] [--candidates 30] [--cv 3] [--seed 0]

Same data, same budget on both sides: the same space, ``n_candidates``, ``cv``, ``seed`` and ``n_jobs=1``
(and one OpenMP thread, set before anything imports numpy, inherited by the worker), the same scorer
(macro F1, the gate metric "f1"). The data is ``make_classification`` (binary, 30 features) split into a
training CSV and a separate holdout. The champion is a HistGradientBoostingClassifier with its defaults
(``early_stopping=False``), saved with skops in a modeltui model directory.

- halving: ``python -m daemon.maintain.search`` as a subprocess (HalvingRandomSearchCV, min_resources =
  "exhaust"), timed from start to exit: interpreter start, CSV reading, search, refit, writing the challenger.
- random: ``RandomizedSearchCV`` in this process over the same distributions, timed around ``fit`` (refit
  included); the data is already in memory, which favours it slightly.

The holdout score of each is the macro F1 of its refitted best estimator (the halving one loaded back from
the challenger directory).
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy/sklearn: n_jobs=1 means one core on both sides

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import skops.io as sio  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sklearn.model_selection import RandomizedSearchCV  # noqa: E402

from daemon.maintain.search import distributions  # noqa: E402
from daemon.maintain.space import SCORING, parse_search, search_argv  # noqa: E402

SPACE: dict[str, Any] = {
    "learning_rate": {"low": 0.01, "high": 0.5, "log": True},
    "max_leaf_nodes": {"low": 8, "high": 128, "log": True, "type": "int"},
    "min_samples_leaf": {"low": 5, "high": 200, "log": True, "type": "int"},
    "l2_regularization": {"low": 0.0001, "high": 10.0, "log": True},
    "max_features": [0.5, 0.8, 1.0],
}
METRIC = "f1"


def write_csv(path: Path, x: Any, y: Any) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([*(f"f{i}" for i in range(x.shape[1])), "target"])
        for row, label in zip(x, y, strict=True):
            w.writerow([*(repr(float(v)) for v in row), int(label)])


def champion_dir(path: Path, x: Any, y: Any) -> Any:
    model = HistGradientBoostingClassifier(early_stopping=False, random_state=0).fit(x, y)
    blob = sio.dumps(model)
    trusted = sorted(str(t) for t in sio.get_untrusted_types(data=blob))
    path.mkdir()
    (path / "model.skops").write_bytes(blob)
    inputs = ",\n".join(f'    {{ name = "f{i}", type = "double" }}' for i in range(x.shape[1]))
    (path / "modeltui.toml").write_text(
        'name = "bench-search"\nflavor = "sklearn"\nmodel_file = "model.skops"\n'
        f"trusted = {json.dumps(trusted)}\n\n[signature]\ninputs = [\n{inputs},\n]\n"
        'outputs = [{ name = "label", type = "long" }]\n\n[params]\nestimator = "HistGradientBoostingClassifier"\n'
    )
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000, help="training rows (the holdout has a quarter as many)")
    ap.add_argument("--candidates", type=int, default=30)
    ap.add_argument("--cv", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    holdout_rows = args.rows // 4
    x, y = make_classification(
        n_samples=args.rows + holdout_rows,
        n_features=30,
        n_informative=12,
        n_redundant=6,
        flip_y=0.05,
        class_sep=0.8,
        random_state=args.seed,
    )
    x_train, y_train, x_hold, y_hold = x[: args.rows], y[: args.rows], x[args.rows :], y[args.rows :]
    spec = parse_search(
        {"method": "halving", "space": SPACE, "n_candidates": args.candidates, "cv": args.cv, "seed": args.seed}
    )

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        write_csv(base / "train.csv", x_train, y_train)
        champion = champion_dir(base / "champion", x_train, y_train)
        champion_f1 = float(f1_score(y_hold, champion.predict(x_hold), average="macro"))
        # The CSV round trip is exact (repr of float64), so both sides see the same numbers.
        out = base / "challenger"
        out.mkdir()
        argv = [sys.executable, *search_argv(base / "champion", base / "train.csv", "target", METRIC, spec, out)]
        started = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        halving_wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        halving = json.loads(proc.stdout)
        blob = (out / "model.skops").read_bytes()
        best = sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))
        halving_hold = float(f1_score(y_hold, best.predict(x_hold), average="macro"))

        random = RandomizedSearchCV(
            HistGradientBoostingClassifier(early_stopping=False, random_state=0),
            distributions(spec),
            n_iter=args.candidates,
            scoring=SCORING[METRIC],
            cv=args.cv,
            n_jobs=1,
            random_state=args.seed,
            refit=True,
        )
        started = time.perf_counter()
        random.fit(x_train, y_train)
        random_wall = time.perf_counter() - started
        random_hold = float(f1_score(y_hold, random.predict(x_hold), average="macro"))
        random_fits = len(random.cv_results_["params"]) * args.cv

    print(
        f"{args.rows} training rows, {holdout_rows} holdout rows, 30 features, binary; champion "
        f"HistGradientBoostingClassifier (defaults) holdout macro F1 {champion_f1:.4f}; space of "
        f"{len(SPACE)} params, n_candidates={args.candidates}, cv={args.cv}, seed={args.seed}, n_jobs=1, "
        f"OMP_NUM_THREADS=1; {os.cpu_count()} CPUs"
    )
    print()
    print("| search | wall s | CV fits | best CV macro F1 | holdout macro F1 |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| halving (worker subprocess; search itself {halving['seconds']:.1f} s) | {halving_wall:.1f} | "
        f"{halving['fits']} ({halving['candidates']} candidate evaluations) | {halving['cv_score']:.4f} | "
        f"{halving_hold:.4f} |"
    )
    print(
        f"| random (RandomizedSearchCV in-process) | {random_wall:.1f} | {random_fits} | "
        f"{-0.0 + float(random.best_score_):.4f} | {random_hold:.4f} |"
    )
    print(
        f"| halving / random | {halving_wall / random_wall:.2f} | {halving['fits'] / random_fits:.2f} | "
        f"{halving['cv_score'] / float(random.best_score_):.3f} | {halving_hold / random_hold:.3f} |"
    )
    print()
    print(f"halving best params: {json.dumps(halving['best_params'])}")
    print(f"random best params: {json.dumps({k: _plain(v) for k, v in random.best_params_.items()})}")
    print(
        "note: halving's best CV score is measured on its last iteration's sample subset "
        "(min_resources='exhaust'), random's on all training rows."
    )
    return 0


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


if __name__ == "__main__":
    raise SystemExit(main())
