"""A maintenance evaluation scans the champion's pickle like the runtime: a refused global stops it, unless the
daemon passes the approved version's refused globals (``MODELTUI_PICKLE_ALLOW``) to the worker."""

from __future__ import annotations

import operator
import re
import shutil
from pathlib import Path

import joblib  # type: ignore[import-untyped]
import pytest
import skops.io as sio

from daemon.maintain.worker import Limits, WorkerError, evaluate

pytestmark = pytest.mark.integration

FAST = Limits(timeout_seconds=120.0, memory_mb=4096)


def test_an_approved_champions_refused_globals_reach_the_evaluation_worker(example_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "champion"
    shutil.copytree(example_dir, d)
    model = sio.load(d / "model.skops", trusted=sio.get_untrusted_types(file=d / "model.skops"))
    model.extra_ = operator.neg  # a global outside the allow-list, harmless to load
    joblib.dump(model, d / "model.joblib")
    manifest = (d / "modeltui.toml").read_text()
    manifest = re.sub(r'model_file = "model.skops"', 'model_file = "model.joblib"\ntrusted = true', manifest)
    (d / "modeltui.toml").write_text(manifest)
    with pytest.raises(WorkerError, match=r"pickle scan refused: _operator\.neg"):
        evaluate(d, d / "eval.csv", "target", ["accuracy"], FAST, tmp_path / "refused.log")
    got = evaluate(d, d / "eval.csv", "target", ["accuracy"], FAST, tmp_path / "ok.log",
                   env={"MODELTUI_PICKLE_ALLOW": "_operator.neg"})  # fmt: skip
    assert got["accuracy"] > 0.9
