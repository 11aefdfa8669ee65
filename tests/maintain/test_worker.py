"""Maintenance workers as real subprocesses: evaluating the bundled example model and running training commands."""

from __future__ import annotations

import csv
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LinearRegression
from sklearn.metrics import f1_score, mean_absolute_error, mean_squared_error, r2_score, roc_auc_score

from daemon.maintain import evaluate as evaluate_module
from daemon.maintain.worker import METRICS, REASON_PREFIX, Cancel, Limits, WorkerError, check_model_dir, evaluate, train

pytestmark = pytest.mark.integration

TRAIN = "python train.py --data {data} --out {output}"
FAST = Limits(timeout_seconds=120.0, memory_mb=4096)


def read_xy(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    data = np.array([[float(v) for v in r] for r in rows[1:]])
    assert rows[0][-1] == "target"
    return data[:, :-1], data[:, -1].astype(np.int64)


def live_members(pgid: int) -> list[int]:
    """Pids of processes in group ``pgid`` that are not zombies."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def assert_group_gone(pgid: int | None) -> None:
    """Every process of the worker's group has exited (within 2 s)."""
    assert pgid is not None
    deadline = time.monotonic() + 2.0
    while live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_members(pgid) == []


def test_metric_names_agree_with_the_worker_process() -> None:
    assert set(METRICS) == set(evaluate_module.CLASSIFICATION) | set(evaluate_module.REGRESSION)
    assert REASON_PREFIX == evaluate_module.PREFIX
    assert [name for name, greater in METRICS.items() if not greater] == ["mae", "rmse"]


def test_evaluate_the_example(example_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "eval.log"
    started = time.monotonic()
    got = evaluate(
        example_dir, example_dir / "eval.csv", "target", ["accuracy", "precision", "recall", "f1", "roc_auc"], FAST, log
    )
    elapsed = time.monotonic() - started
    manifest = tomllib.loads((example_dir / "modeltui.toml").read_text())
    x, y = read_xy(example_dir / "eval.csv")
    model = sio.load(example_dir / "model.skops")
    pred = model.predict(x)
    assert got["accuracy"] == pytest.approx(manifest["metrics"]["accuracy"], abs=1e-6)
    assert got["f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, model.predict_proba(x)[:, 1]), abs=1e-12)
    # The example's manifest records the macro F1 the monitoring and this worker use (scikit-learn's default
    # binary F1 differs on this data: 0.966667 vs 0.955031), so a challenger's recorded F1 compares with it.
    assert manifest["metrics"]["f1"] == pytest.approx(got["f1"], abs=1e-6)
    assert manifest["metrics"]["f1"] != pytest.approx(f1_score(y, pred), abs=1e-3)
    assert "exit status 0" in log.read_text()
    print(f"evaluate took {elapsed:.2f} s")


def test_train_with_the_example_command_then_evaluate(example_dir: Path, tmp_path: Path) -> None:
    manifest = tomllib.loads((example_dir / "modeltui.toml").read_text())
    assert manifest["training"]["command"] == TRAIN
    log = tmp_path / "train.log"
    out = tmp_path / "challenger"
    started = time.monotonic()
    assert train(TRAIN, example_dir, example_dir / "eval.csv", out, FAST, log) == out
    elapsed = time.monotonic() - started
    assert check_model_dir(out) is None
    assert "-> " + str(out) in log.read_text()  # train.py's stdout went to the log
    new = tomllib.loads((out / "modeltui.toml").read_text())
    got = evaluate(out, out / "eval.csv", "target", ["accuracy", "roc_auc"], FAST, log)
    assert got["accuracy"] == pytest.approx(new["metrics"]["accuracy"], abs=1e-6)
    assert 0.5 < got["roc_auc"] <= 1.0
    print(f"train took {elapsed:.2f} s")


def test_regression_metrics_without_a_signature(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + rng.normal(scale=0.3, size=200)
    model = LinearRegression().fit(x[:100], y[:100])
    model_dir = tmp_path / "reg"
    model_dir.mkdir()
    (model_dir / "model.skops").write_bytes(sio.dumps(model))
    (model_dir / "modeltui.toml").write_text('name = "reg"\nflavor = "sklearn"\nmodel_file = "model.skops"\n')
    data = tmp_path / "holdout.csv"
    # The target sits between the inputs: without a signature the inputs are the other columns in file order.
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "y", "b", "c"])
        w.writerows([float(r[0]), float(t), float(r[1]), float(r[2])] for r, t in zip(x[100:], y[100:], strict=True))
    got = evaluate(model_dir, data, "y", ["mae", "rmse", "r2"], FAST, tmp_path / "log")
    pred = model.predict(x[100:])
    assert got["mae"] == pytest.approx(mean_absolute_error(y[100:], pred), abs=1e-9)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y[100:], pred)), abs=1e-9)
    assert got["r2"] == pytest.approx(r2_score(y[100:], pred), abs=1e-9)


def test_training_command_that_fails(example_dir: Path, tmp_path: Path) -> None:
    command = "python -c \"import sys; print('preparing'); sys.exit('bad input: no rows')\""  # exit status 1
    with pytest.raises(WorkerError) as info:
        train(command, example_dir, None, tmp_path / "out", FAST, tmp_path / "log")
    assert info.value.kind == "failed"
    assert info.value.returncode == 1
    assert "preparing" in info.value.log_tail
    assert "bad input: no rows" in info.value.log_tail
    command = "python -c 'import sys; sys.exit(3)'"
    with pytest.raises(WorkerError) as info:
        train(command, example_dir, None, tmp_path / "out2", FAST, tmp_path / "log")
    assert (info.value.kind, info.value.returncode) == ("failed", 3)
    assert "exit status 3" in str(info.value)


def test_training_command_that_times_out_is_killed_with_its_children(example_dir: Path, tmp_path: Path) -> None:
    command = "python -c \"import subprocess as s, time; s.Popen(['sleep', '60']); print('started'); time.sleep(60)\""
    started = time.monotonic()
    with pytest.raises(WorkerError) as info:
        train(command, example_dir, None, tmp_path / "out", Limits(timeout_seconds=2.0), tmp_path / "log")
    elapsed = time.monotonic() - started
    assert info.value.kind == "timeout"
    assert 2.0 <= elapsed < 30, elapsed  # killed at its limit, long before its 60 s sleep ends (loaded CI)
    assert "started" in info.value.log_tail
    assert_group_gone(info.value.pid)
    print(f"timeout raised after {elapsed:.2f} s")


def test_cancel_kills_a_training_command_with_its_children(example_dir: Path, tmp_path: Path) -> None:
    command = "python -c \"import subprocess as s, time; s.Popen(['sleep', '60']); print('started'); time.sleep(60)\""
    token = Cancel()
    timer = threading.Timer(1.0, token.cancel, args=("by a test",))
    started = time.monotonic()  # before the timer starts: the cancel comes at least 1 s after this
    timer.start()
    with pytest.raises(WorkerError) as info:
        train(command, example_dir, None, tmp_path / "out", FAST, tmp_path / "log", token)
    elapsed = time.monotonic() - started
    assert info.value.kind == "cancelled"
    assert 1.0 <= elapsed < 30, elapsed  # killed on cancel, long before its 60 s sleep ends (loaded CI)
    assert "cancelled: process group killed" in (tmp_path / "log").read_text()
    assert_group_gone(info.value.pid)
    # A cancelled token starts nothing more.
    with pytest.raises(WorkerError) as again:
        evaluate(example_dir, example_dir / "eval.csv", "target", ["f1"], FAST, tmp_path / "log", token)
    assert again.value.kind == "cancelled"
    assert again.value.pid is None


def test_training_command_that_needs_too_much_memory(example_dir: Path, tmp_path: Path) -> None:
    command = 'python -c "x = bytearray(500_000_000)"'
    with pytest.raises(WorkerError) as info:
        train(command, example_dir, None, tmp_path / "out", Limits(timeout_seconds=60, memory_mb=200), tmp_path / "log")
    assert info.value.kind == "memory"
    assert "MemoryError" in info.value.log_tail
    assert "200 MB" in str(info.value)
    # The same command fits a larger limit.
    train_ok = (
        "python -c \"x = bytearray(500_000_000); import sys; open(sys.argv[1] + '/modeltui.toml', 'w')\" {output}"
    )
    with pytest.raises(WorkerError) as info:
        train(train_ok, example_dir, None, tmp_path / "out2", Limits(memory_mb=2048), tmp_path / "log")
    assert info.value.kind == "garbage"  # it ran to the end; its manifest is empty


def test_training_command_that_writes_garbage(example_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(WorkerError) as info:
        train("python -c \"print('done')\"", example_dir, None, tmp_path / "out", FAST, tmp_path / "log")
    assert info.value.kind == "garbage"
    assert "no modeltui.toml" in str(info.value)
    (example_dir / "bad_train.py").write_text(
        "import shutil, sys\n"
        "from pathlib import Path\n"
        "out = Path(sys.argv[1])\n"
        "shutil.copy('modeltui.toml', out / 'modeltui.toml')\n"  # cwd is the model directory
        "if sys.argv[2] == 'invalid':\n"
        "    (out / 'modeltui.toml').write_text('name = 3\\n')\n"
    )
    with pytest.raises(WorkerError) as info:
        train("python bad_train.py {output} no-model", example_dir, None, tmp_path / "out2", FAST, tmp_path / "log")
    assert info.value.kind == "garbage"
    assert "model_file 'model.skops', which is not a file" in str(info.value)
    with pytest.raises(WorkerError) as info:
        train("python bad_train.py {output} invalid", example_dir, None, tmp_path / "out3", FAST, tmp_path / "log")
    assert info.value.kind == "garbage"
    assert "modeltui.toml is invalid" in str(info.value)


def test_training_arguments_are_checked_before_running(example_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    with pytest.raises(ValueError, match=r"uses \{data\}"):
        train(TRAIN, example_dir, None, tmp_path / "out", FAST, log)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(ValueError, match="not an empty directory"):
        train(TRAIN, example_dir, example_dir / "eval.csv", busy, FAST, log)
    with pytest.raises(ValueError, match="empty"):
        train("  ", example_dir, None, tmp_path / "out", FAST, log)
    assert not log.exists()


def test_evaluate_a_corrupt_model(example_dir: Path, tmp_path: Path) -> None:
    (example_dir / "model.skops").write_bytes(b"not a zip file at all")
    with pytest.raises(WorkerError) as info:
        evaluate(example_dir, example_dir / "eval.csv", "target", ["accuracy"], FAST, tmp_path / "log")
    assert info.value.kind == "failed"
    assert info.value.returncode == 2
    assert "cannot load the model: model.skops is not a readable skops file" in info.value.message


def test_evaluate_refuses_unknown_metrics_before_starting(example_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        evaluate(example_dir, example_dir / "eval.csv", "target", ["accuracy", "auc"], FAST, log)
    with pytest.raises(ValueError, match="no metrics"):
        evaluate(example_dir, example_dir / "eval.csv", "target", [], FAST, log)
    assert not log.exists()


def test_evaluate_data_without_the_target_column(example_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(WorkerError) as info:
        evaluate(example_dir, example_dir / "eval.csv", "label", ["accuracy"], FAST, tmp_path / "log")
    assert info.value.kind == "failed"
    assert "has no target column 'label'" in info.value.message
    assert "'mean radius'" in info.value.message  # its columns are listed


def test_evaluate_refuses_roc_auc_for_a_regressor(tmp_path: Path) -> None:
    model_dir = tmp_path / "reg"
    model_dir.mkdir()
    model = LinearRegression().fit(np.array([[0.0], [1.0], [2.0]]), np.array([0.0, 1.0, 2.0]))
    (model_dir / "model.skops").write_bytes(sio.dumps(model))
    (model_dir / "modeltui.toml").write_text(
        'name = "reg"\nflavor = "sklearn"\nmodel_file = "model.skops"\n'
        '[signature]\ninputs = [{ name = "x", type = "double" }]\n'
    )
    (tmp_path / "d.csv").write_text("x,y\n0,0\n1,1\n2,1\n")
    with pytest.raises(WorkerError) as info:
        evaluate(model_dir, tmp_path / "d.csv", "y", ["roc_auc"], FAST, tmp_path / "log")
    assert "roc_auc needs a binary classifier with predict_proba" in info.value.message
