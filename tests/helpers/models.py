"""Small model directories the tests push: none needs a trained model, most are python-flavor."""

from __future__ import annotations

from pathlib import Path

#: A manifest for the registry's own tests, whose model file is any bytes.
IRIS_MANIFEST = b'name = "iris"\nflavor = "sklearn"\nmodel_file = "model.bin"\n'


def make_model_dir(path: Path, name: str = "demo", *, weights: bytes = b"w1", extra: dict[str, bytes] | None = None,
                   params: str = "C = 1.0", metrics: str = "accuracy = 0.9") -> Path:
    """A small, valid model directory (the daemon never loads the model file, so any bytes do)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "modeltui.toml").write_text(
        f'name = "{name}"\nflavor = "sklearn"\nmodel_file = "model.skops"\n'
        f'requirements = ["scikit-learn"]\n\n[params]\n{params}\n\n[metrics]\n{metrics}\n\n'
        '[signature]\ninputs = [{name = "x", type = "double"}]\n'
    )
    (path / "model.skops").write_bytes(weights)
    for rel, data in (extra or {}).items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return path


SCALING_PREDICT = """\
import os, sys, threading
FACTOR = {factor}
{extra}
def predict(X):
    print(f"predicting {{len(X)}} rows", flush=True)
    return [FACTOR * row[0] for row in X]
"""


def python_model(path: Path, *, factor: float = 2.0, extra: str = "", name: str = "dbl") -> Path:
    """A python-flavor model returning FACTOR * x; ``extra`` runs at import (to make it crash or fail)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "modeltui.toml").write_text(
        f'name = "{name}"\nflavor = "python"\nmodel_file = "predict.py:predict"\nrequirements = []\n\n'
        '[signature]\ninputs = [{name = "x", type = "double"}]\n'
    )
    (path / "predict.py").write_text(SCALING_PREDICT.format(factor=factor, extra=extra))
    return path


CLASSIFIER = """\
def predict(X):
    return [int(row[0] > 0) for row in X]
"""


def classifier(path: Path) -> Path:
    """The python-flavor model ``sign``: class 1 for a positive x, else 0 (for monitored deployments)."""
    path.mkdir(parents=True)
    (path / "modeltui.toml").write_text(
        'name = "sign"\nflavor = "python"\nmodel_file = "predict.py:predict"\nrequirements = []\n\n'
        '[signature]\ninputs = [{name = "x", type = "double"}]\n'
    )
    (path / "predict.py").write_text(CLASSIFIER)
    return path


#: predict doubles each row and logs one line per call; an input >= 1000 floods the log with that many lines.
ECHO_PREDICT = '''\
import sys


def predict(X):
    first = float(X[0][0])
    if first >= 1000:
        sys.stdout.write("".join(f"flood line {i}\\n" for i in range(int(first))))
    else:
        print(f"predicted {len(X)} row(s), first {first}")
    sys.stdout.flush()
    return [2 * float(row[0]) for row in X]
'''


def echo_model(path: Path, name: str = "echo", *, note: str = "") -> Path:
    """A python-flavor model that doubles and logs each call (``note`` makes a new version's bytes differ)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "predict.py").write_text(ECHO_PREDICT + (f"# {note}\n" if note else ""))
    (path / "modeltui.toml").write_text(
        f'name = "{name}"\nflavor = "python"\nmodel_file = "predict.py:predict"\n\n'
        '[signature]\ninputs = [{ name = "x", type = "double" }]\n'
    )
    return path
