"""The BentoML half of bench/serving: a BentoML 1.x service, served from the BentoML venv (bench/serving/.venv-bentoml):

    BENCH_MODEL_PKL=MODEL.pkl BENCH_SKLEARN_VERSION=1.9.1 \\
        .venv-bentoml/bin/bentoml serve bento_service:BenchRF --host 127.0.0.1 --port P   # cwd bench/serving

``run.py`` starts it that way. The service loads the RandomForest that ``run.py`` trained and pickled (the very
model the other peers serve; both venvs hold the same scikit-learn version and the service refuses to start
otherwise) and answers ``POST /predict`` with BentoML's own JSON input, one argument named ``rows``:
``{"rows": [[f0, ..., f7]]}`` for one row; the answer is the JSON list of predicted classes, ``[1]``.

The endpoint is BentoML's adaptive batching (``batchable=True``, ``max_batch_size=64``, ``max_latency_ms=200``,
batch dimension 0): concurrent one-row requests are merged into one ``predict`` call. Everything else is
BentoML's default — in 1.4 one worker process per service (``workers`` unset), one thread. Imports nothing
of modeltui.
"""

from __future__ import annotations

import os
import pickle

import bentoml
import numpy as np
import sklearn


@bentoml.service
class BenchRF:
    def __init__(self) -> None:
        want = os.environ.get("BENCH_SKLEARN_VERSION")
        if want and want != sklearn.__version__:
            raise RuntimeError(
                f"scikit-learn {sklearn.__version__} here, {want} in the project venv: the pickle would not be "
                "the same model (re-run bench/serving/setup_bentoml.sh)"
            )
        with open(os.environ["BENCH_MODEL_PKL"], "rb") as fh:
            self.model = pickle.load(fh)  # written by run.py a moment before it started this server

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=64, max_latency_ms=200)
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(rows, dtype=np.float64))
