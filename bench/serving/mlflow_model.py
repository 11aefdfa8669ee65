"""The MLflow half of bench/serving, run inside the MLflow venv (bench/registry/.venv-mlflow):

    .venv-mlflow/bin/python bench/serving/mlflow_model.py --pickle MODEL.pkl --out DIR --columns f0,f1,...

Loads the RandomForest that ``run.py`` trained and pickled (both venvs hold the same scikit-learn version;
the script refuses to go on otherwise) and writes it as an MLflow model with ``mlflow.sklearn.save_model``:
a signature of N double columns in, one long out, and pinned pip requirements so MLflow does not try to
infer them. Prints one JSON line: the versions and the time the save took. Imports nothing of modeltui.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pickle", type=Path, required=True, help="the model, pickled by run.py (trusted: we made it)")
    ap.add_argument("--out", type=Path, required=True, help="directory to create (must not exist)")
    ap.add_argument("--columns", required=True, help="comma-separated input column names")
    ap.add_argument("--sklearn-version", required=True, help="scikit-learn version that pickled the model")
    args = ap.parse_args()

    import mlflow
    import mlflow.sklearn
    import sklearn
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    if sklearn.__version__ != args.sklearn_version:
        print(
            f"scikit-learn {sklearn.__version__} here, {args.sklearn_version} in the project venv: "
            "the pickle would not be the same model",
            file=sys.stderr,
        )
        return 2
    with args.pickle.open("rb") as fh:
        model = pickle.load(fh)  # written a moment ago by run.py
    columns = args.columns.split(",")
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", c) for c in columns]),
        outputs=Schema([ColSpec("long")]),
    )
    t0 = time.perf_counter()
    mlflow.sklearn.save_model(
        model,
        str(args.out),
        signature=signature,
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )
    took = time.perf_counter() - t0
    print(json.dumps({"mlflow": mlflow.__version__, "sklearn": sklearn.__version__, "save_s": took}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
