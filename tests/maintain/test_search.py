"""The built-in hyper-parameter search: the spec's validation (fast) and the worker as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from daemon.maintain.space import SCORING, Range, SearchSpec, parse_search, search_argv
from daemon.maintain.worker import METRICS, Limits, check_model_dir, evaluate

PREFIX = "modeltui-search: "
FAST = Limits(timeout_seconds=120.0, memory_mb=4096)
REPO = Path(__file__).resolve().parents[2]
SPACE: dict[str, Any] = {
    "clf__C": {"low": 0.001, "high": 100.0, "log": True},
    "clf__class_weight": ["balanced", None],
}


# ---- the spec -------------------------------------------------------------------------------------------


def test_scoring_covers_the_gate_metrics() -> None:
    assert set(SCORING) == set(METRICS)


def test_a_spec_from_a_table_and_from_json_round_trips() -> None:
    spec = parse_search({"space": {**SPACE, "clf__max_iter": {"low": 100, "high": 2000, "type": "int"}}})
    assert spec.method == "halving"
    assert (spec.estimator, spec.n_candidates, spec.cv, spec.factor, spec.seed) == (None, 20, 3, 3, 0)
    assert spec.space["clf__C"] == Range(low=0.001, high=100.0, log=True)
    assert spec.space["clf__class_weight"] == ("balanced", None)
    assert parse_search(spec.model_dump_json()) == spec
    text = json.dumps({"method": "random", "space": {"C": [0.1, 1, 10]}, "n_candidates": 5, "seed": 7})
    assert parse_search(text) == SearchSpec(method="random", space={"C": (0.1, 1, 10)}, n_candidates=5, seed=7)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"space": {"C": []}}, "search.space.C: an empty list"),
        ({"space": {"C": {"low": 5, "high": 1}}}, "search.space.C: low (5) must be below high (1)"),
        ({"space": {"C": {"low": 1, "high": 1}}}, "search.space.C: low (1) must be below high (1)"),
        ({"space": {"C": {"low": 0, "high": 1, "log": True}}}, "search.space.C: a log range needs low > 0"),
        ({"space": {"n": {"low": 1.5, "high": 9, "type": "int"}}}, "search.space.n: an int range needs whole-number"),
        ({"space": {"C": {"low": 1}}}, "search.space.C: a range needs high"),
        ({"space": {"C": {"low": 1, "high": 2, "step": 1}}}, "search.space.C: unknown key 'step' in a range"),
        ({"space": {"C": "1..10"}}, "search.space.C: '1..10' is neither a list of choices nor a range"),
        ({"space": {"C": [[1, 2]]}}, "search.space.C: choice 0 is [1, 2]"),
        ({"space": {"bad-key": [1]}}, "search.space: invalid parameter name 'bad-key'"),
        ({"space": {}}, "search.space: is empty"),
        ({"method": "grid", "space": {"C": [1]}}, "search.method: Input should be 'halving' or 'random'"),
        ({"space": {"C": [1]}, "cv": 1}, "search.cv: Input should be greater than or equal to 2"),
        ({"space": {"C": [1]}, "trials": 3}, "search.trials: Extra inputs are not permitted"),
        ({"space": {"C": [1]}, "estimator": "forest"}, "search.estimator: 'forest' is not a dotted class path"),
        ("[1, 2]", "search must be a table / JSON object"),
        ("{space: 1}", "search: not valid JSON"),
    ],
)
def test_wrong_shapes_say_what_and_where(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r"^search") as info:
        parse_search(value)
    assert message in str(info.value)


def test_search_argv() -> None:
    spec = parse_search({"space": SPACE})
    argv = search_argv(Path("champ"), Path("train.csv"), "target", "f1", spec, Path("out"))
    assert argv[:2] == ["-m", "daemon.maintain.search"]
    assert argv[argv.index("--metric") + 1] == "f1"
    assert parse_search(argv[argv.index("--spec") + 1]) == spec
    assert Path(argv[argv.index("--output") + 1]).is_absolute()
    with pytest.raises(ValueError, match="unknown metric"):
        search_argv(Path("champ"), Path("train.csv"), "target", "logloss", spec, Path("out"))


# ---- the worker -----------------------------------------------------------------------------------------


def run_search(
    model_dir: Path, out: Path, spec: dict[str, Any], *, target: str = "target", metric: str = "f1"
) -> subprocess.CompletedProcess[str]:
    out.mkdir(exist_ok=True)
    argv = search_argv(model_dir, model_dir / "eval.csv", target, metric, parse_search(spec), out)
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)


def reason(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.startswith(PREFIX)]
    assert len(lines) == 1, proc.stderr
    return lines[0][len(PREFIX) :]


@pytest.mark.integration
@pytest.mark.parametrize("method", ["halving", "random"])
def test_search_makes_a_challenger_the_runtime_loads(example_dir: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / "challenger"
    proc = run_search(example_dir, out, {"method": method, "space": SPACE, "n_candidates": 6, "seed": 1})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"best_params", "cv_score", "candidates", "evaluations", "fits", "seconds"}
    assert set(result["best_params"]) == set(SPACE)
    assert 0.001 <= result["best_params"]["clf__C"] <= 100.0
    assert result["best_params"]["clf__class_weight"] in ("balanced", None)
    assert 0.5 < result["cv_score"] <= 1.0
    assert result["fits"] == result["evaluations"] * 3
    assert result["candidates"] == 6
    assert result["evaluations"] > 6 if method == "halving" else result["evaluations"] == 6

    assert check_model_dir(out) is None
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in example_dir.iterdir())
    assert (out / "model.skops").read_bytes() != (example_dir / "model.skops").read_bytes()
    old = tomllib.loads((example_dir / "modeltui.toml").read_text())
    new = tomllib.loads((out / "modeltui.toml").read_text())
    # [params] are the challenger's effective ones, in the champion's names: C is the searched clf__C.
    assert new["params"]["C"] == result["best_params"]["clf__C"]
    assert "clf__C" not in new["params"]
    weight = result["best_params"]["clf__class_weight"]
    assert new["params"]["clf__class_weight"] == ("None" if weight is None else weight)
    unchanged = {k: v for k, v in old["params"].items() if k != "C"}
    assert {k: v for k, v in new["params"].items() if k not in ("C", "clf__class_weight")} == unchanged
    del new["params"], old["params"]
    assert new == old  # trusted unchanged: nothing new to trust
    got = evaluate(out, example_dir / "eval.csv", "target", ["f1", "roc_auc"], FAST, tmp_path / "eval.log")
    assert 0.8 < got["f1"] <= 1.0
    assert 0.8 < got["roc_auc"] <= 1.0


@pytest.mark.integration
def test_another_estimator_extends_trusted(example_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "challenger"
    spec = {
        "estimator": "sklearn.tree.DecisionTreeClassifier",
        "space": {"max_depth": {"low": 1, "high": 6, "type": "int"}, "criterion": ["gini", "entropy"]},
        "n_candidates": 4,
    }
    proc = run_search(example_dir, out, spec, metric="accuracy")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert 1 <= result["best_params"]["max_depth"] <= 6
    new = tomllib.loads((out / "modeltui.toml").read_text())
    assert "sklearn.tree._tree.Tree" in new["trusted"]
    # Nothing of the champion's LogisticRegression parameters describes a decision tree.
    assert new["params"] == {"estimator": "DecisionTreeClassifier", **result["best_params"]}
    got = evaluate(out, example_dir / "eval.csv", "target", ["accuracy"], FAST, tmp_path / "eval.log")
    assert 0.8 < got["accuracy"] <= 1.0


def test_challenger_params_are_the_effective_ones_in_the_champions_names() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from daemon.maintain.search import challenger_params

    champion = {"estimator": "LogisticRegression", "scaler": "StandardScaler", "C": 1.0, "solver": "lbfgs",
                "max_iter": 1000, "test_size": 0.25}  # fmt: skip
    best = Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(C=3.77, max_iter=1000))])
    got = challenger_params(champion, best, {"clf__C": 3.77, "clf__class_weight": None}, same_estimator=True)
    assert got == {"estimator": "LogisticRegression", "scaler": "StandardScaler", "C": 3.77, "solver": "lbfgs",
                   "max_iter": 1000, "test_size": 0.25, "clf__class_weight": "None"}  # fmt: skip


@pytest.mark.integration
def test_refusals(example_dir: Path, tmp_path: Path) -> None:
    why = reason(run_search(example_dir, tmp_path / "a", {"space": {"clf__gamma": [1, 2], "clf__C": [1.0]}}))
    assert why.startswith("Pipeline has no parameter 'clf__gamma'; its parameters include: ")
    assert "clf__C" in why

    why = reason(run_search(example_dir, tmp_path / "b", {"space": SPACE}, target="label"))
    assert "has no target column 'label'" in why

    spec = {"estimator": "sklearn.ensemble.NoSuchForest", "space": {"n_estimators": [10]}}
    why = reason(run_search(example_dir, tmp_path / "c", spec))
    assert why == "estimator 'sklearn.ensemble.NoSuchForest': module 'sklearn.ensemble' has no 'NoSuchForest'"
    spec = {"estimator": "nosuchpackage.Model", "space": {"n": [10]}}
    assert reason(run_search(example_dir, tmp_path / "d", spec)).startswith(
        "estimator 'nosuchpackage.Model': cannot import module 'nosuchpackage'"
    )

    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "model.onnx").write_bytes(b"not really")
    (onnx / "modeltui.toml").write_text('name = "o"\nflavor = "onnx"\nmodel_file = "model.onnx"\n')
    (onnx / "eval.csv").write_text("x,target\n1,0\n2,1\n")
    why = reason(run_search(onnx, tmp_path / "e", {"space": SPACE}))
    assert why == "only scikit-learn models (flavor sklearn) can be searched; this one is 'onnx'"

    # Every fit fails: an invalid value for the solver.
    why = reason(run_search(example_dir, tmp_path / "f", {"space": {"clf__solver": ["no-such-solver"]}}))
    assert "every fit of the search failed" in why
