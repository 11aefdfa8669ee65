"""Input-drift histograms of the serving runtime, checked over real HTTP against numpy computed here."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.serving.drift import FeatureHistograms, load_reference
from daemon.serving.manifest import read_manifest
from tests.helpers.paths import EXAMPLE
from tests.helpers.prerequisites import need
from tests.helpers.prometheus import samples
from tests.helpers.serving import Serving, copy_example, send, write_python_model

pytestmark = pytest.mark.integration

DECILES = np.arange(1, 10) / 10
FAMILIES = ("modeltui_feature_value", "modeltui_feature_reference_ratio", "modeltui_feature_missing_total")
def by_feature(text: str, name: str, key: str) -> dict[str, list[tuple[float, float]]]:
    """feature → [(bound, value), ...] in exposition order, for a bucket-like family (``le`` or ``bound``)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for labels, value in samples(text, name):
        out.setdefault(labels["feature"], []).append((float(labels[key]), value))
    return out


def one_per_feature(text: str, name: str) -> dict[str, float]:
    return {labels["feature"]: value for labels, value in samples(text, name)}


def _eval_columns() -> tuple[list[str], np.ndarray[Any, Any]]:
    with (EXAMPLE / "eval.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0][:30], np.array([[float(v) for v in r[:30]] for r in rows[1:]])


COLUMNS, REFERENCE = _eval_columns()


def expected_bounds(column: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    finite = column[np.isfinite(column)]
    return np.unique(np.quantile(finite, DECILES))


# ---- the example model (sklearn, 30 doubles, eval.csv) -------------------------------------------------


def test_counts_equal_numpy_on_the_rows_sent(serving_factory: Any, tmp_path: Path) -> None:
    server: Serving = serving_factory(copy_example(tmp_path / "model")).start()
    rng = np.random.default_rng(4)
    shifted = REFERENCE * rng.uniform(0.7, 1.6, size=REFERENCE.shape)
    big = np.vstack([REFERENCE, shifted])  # 286 rows in one request: one batch above SMALL_BATCH
    assert big.shape[0] >= FeatureHistograms.SMALL_BATCH
    sent = [REFERENCE[:1], REFERENCE[1:40], shifted[:7], big]
    conn = server.connect()
    try:
        for part in sent:
            status, _, body = send(conn, "POST", "/predict", {"inputs": part.tolist()})
            assert status == 200, body
        # CSV through /invocations counts too; a request the schema refuses does not.
        csv_body = ",".join(f'"{c}"' for c in COLUMNS) + "\n" + ",".join(repr(v) for v in shifted[8].tolist()) + "\n"
        status, _, body = send(conn, "POST", "/invocations", csv_body.encode(), {"Content-Type": "text/csv"})
        assert status == 200, body
        assert send(conn, "POST", "/predict", {"inputs": [[1.0]]})[0] == 422
    finally:
        conn.close()
    values = np.vstack([*sent, shifted[8:9]])
    text = server.metrics()

    buckets = by_feature(text, "modeltui_feature_value_bucket", "le")
    counts = one_per_feature(text, "modeltui_feature_value_count")
    sums = one_per_feature(text, "modeltui_feature_value_sum")
    missing = one_per_feature(text, "modeltui_feature_missing_total")
    assert sorted(buckets) == sorted(COLUMNS)
    for j, name in enumerate(COLUMNS):
        bounds = expected_bounds(REFERENCE[:, j])
        column = values[:, j]
        want = [(float(b), float(np.count_nonzero(column <= b))) for b in bounds]
        want.append((float("inf"), float(column.size)))
        assert buckets[name] == want, name
        assert counts[name] == column.size
        assert sums[name] == pytest.approx(float(column.sum()), rel=1e-12)
        assert missing[name] == 0


def test_reference_ratios_equal_numpy_quantiles_of_eval_csv(serving_factory: Any, tmp_path: Path) -> None:
    server: Serving = serving_factory(copy_example(tmp_path / "model")).start()
    text = server.metrics()
    ratios = by_feature(text, "modeltui_feature_reference_ratio", "bound")
    le = by_feature(text, "modeltui_feature_value_bucket", "le")
    assert sorted(ratios) == sorted(COLUMNS)
    for j, name in enumerate(COLUMNS):
        column = REFERENCE[:, j]
        bounds = expected_bounds(column)
        want = [(float(b), float(np.mean(column <= b))) for b in bounds] + [(float("inf"), 1.0)]
        assert ratios[name] == want, name
        # The gauge's bounds are exactly the histogram's buckets, so the two can be compared bucket by bucket.
        assert [b for b, _ in ratios[name]] == [b for b, _ in le[name]]
        assert 1 <= len(bounds) <= 9


def test_same_reference_for_every_instance(serving_factory: Any, tmp_path: Path) -> None:
    a = serving_factory(copy_example(tmp_path / "a")).start()
    b = serving_factory(copy_example(tmp_path / "b")).start()

    def reference(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("modeltui_feature_reference_ratio")]

    assert reference(a.metrics()) == reference(b.metrics())
    assert len(reference(a.metrics())) >= 30 * 2


def test_promtool_accepts_the_exposition_with_feature_metrics(serving_factory: Any, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    need(promtool is not None, "promtool (Debian's prometheus package; scripts/test.sh installs it as root)")
    assert promtool is not None
    server: Serving = serving_factory(copy_example(tmp_path / "model")).start()
    status, _ = server.json("POST", "/predict", {"inputs": REFERENCE[:20].tolist()})
    assert status == 200
    text = server.metrics()
    assert "# TYPE modeltui_feature_value histogram" in text
    assert "# TYPE modeltui_feature_reference_ratio gauge" in text
    assert "# TYPE modeltui_feature_missing_total counter" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def _without_evaluation(model_dir: Path, replacement: str = "") -> None:
    manifest = model_dir / "modeltui.toml"
    text = manifest.read_text()
    text = re.sub(r'\[evaluation\]\ndata = "eval.csv"\ntarget = "target"\n', replacement, text)
    manifest.write_text(text)


@pytest.mark.parametrize(
    ("case", "replacement", "reason"),
    [
        ("no [evaluation]", "", None),
        ("missing file", '[evaluation]\ndata = "gone.csv"\ntarget = "target"\n', "is not a file"),
        ("outside the directory", '[evaluation]\ndata = "../eval.csv"\ntarget = "target"\n', "leaves the model"),
    ],
)
def test_no_evaluation_data_no_feature_metrics(
    serving_factory: Any, tmp_path: Path, case: str, replacement: str, reason: str | None
) -> None:
    model = copy_example(tmp_path / "model")
    shutil.copy(model / "eval.csv", tmp_path / "eval.csv")
    _without_evaluation(model, replacement)
    assert ("[evaluation]" in (model / "modeltui.toml").read_text()) == bool(replacement)
    server: Serving = serving_factory(model).start()
    status, _ = server.json("POST", "/predict", {"inputs": REFERENCE[:5].tolist()})
    assert status == 200  # the model serves as before
    text = server.metrics()
    assert not [line for line in text.splitlines() if "modeltui_feature_" in line]
    assert "modeltui_predictions_total" in text
    if reason is not None:
        assert "no input-drift metrics" in server.stderr()
        assert reason in server.stderr()


# ---- python models: mixed types, missing values, rejected batches, many features ---------------------

MIXED = """
import math

def predict(X):
    out = []
    for a, b, c in X:
        if b < 0:
            raise ValueError("b must not be negative")
        out.append(0 if (isinstance(a, float) and math.isnan(a)) else int(a > 1.5))
    return out
"""


def test_missing_values_strings_and_rejected_batches(serving_factory: Any, tmp_path: Path) -> None:
    model = write_python_model(
        tmp_path / "mixed", MIXED,
        inputs='{name = "a", type = "double"}, {name = "b", type = "long"}, {name = "c", type = "string"}',
        extra='[evaluation]\ndata = "ref.csv"\n',
    )
    ref_a = [0.5, 1.0, "", 1.5, 2.0, 2.5, "nan", 3.0, 3.5, 4.0, 4.5]
    ref_b = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    lines = ["a,b,c,target"] + [f"{a},{b},x,0" for a, b in zip(ref_a, ref_b, strict=True)]
    (model / "ref.csv").write_text("\n".join(lines) + "\n")
    server: Serving = serving_factory(model).start()
    rows = [[0.2, 3, "p"], [None, 4, "q"], [2.2, 5, "r"], [None, 40, "s"], [9.0, 1, "t"]]
    status, out = server.json("POST", "/predict", {"inputs": rows})
    assert status == 200, out
    status, out = server.json("POST", "/predict", {"inputs": [[1.0, -1, "bad"]]})
    assert status == 422, out  # the model refused it: not counted
    text = server.metrics()
    buckets = by_feature(text, "modeltui_feature_value_bucket", "le")
    assert sorted(buckets) == ["a", "b"]  # the string input has no histogram
    ref = {"a": np.array([float(v) if v not in ("", "nan") else np.nan for v in ref_a]), "b": np.array(ref_b, float)}
    live = {"a": np.array([0.2, 2.2, 9.0]), "b": np.array([3, 4, 5, 40, 1], float)}
    for name in ("a", "b"):
        bounds = expected_bounds(ref[name])
        want = [(float(x), float(np.count_nonzero(live[name] <= x))) for x in bounds]
        assert buckets[name] == [*want, (float("inf"), float(live[name].size))]
        finite = ref[name][np.isfinite(ref[name])]
        ratios = by_feature(text, "modeltui_feature_reference_ratio", "bound")[name]
        assert ratios == [(float(x), float(np.mean(finite <= x))) for x in bounds] + [(float("inf"), 1.0)]
    missing = one_per_feature(text, "modeltui_feature_missing_total")
    assert missing == {"a": 2.0, "b": 0.0}
    assert one_per_feature(text, "modeltui_feature_value_count") == {"a": 3.0, "b": 5.0}


WIDE = "def predict(X):\n    return [0] * len(X)\n"


def test_label_cardinality_stays_bounded(serving_factory: Any, tmp_path: Path) -> None:
    n_inputs = 150
    names = [f"f{i}" for i in range(n_inputs)]
    model = write_python_model(
        tmp_path / "wide", WIDE,
        inputs=", ".join(f'{{name = "{n}", type = "double"}}' for n in names) + ', {name = "s", type = "string"}',
        extra='[evaluation]\ndata = "ref.csv"\n',
    )
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2000, n_inputs))
    data[:, 1] = 7.0  # a constant column: a single bound
    with (model / "ref.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*names, "s"])
        w.writerows([*map(repr, row), "x"] for row in data.tolist())
    server: Serving = serving_factory(model).start()
    live = rng.normal(size=(300, n_inputs)) * 3  # values never seen: still only the reference's buckets
    status, out = server.json("POST", "/predict", {"inputs": [[*row, "y"] for row in live.tolist()]})
    assert status == 200, out
    text = server.metrics()
    buckets = by_feature(text, "modeltui_feature_value_bucket", "le")
    assert list(buckets) == names[:100]  # the first 100 numeric inputs, in signature order
    assert all(2 <= len(b) <= 10 for b in buckets.values())
    assert buckets["f1"] == [(7.0, float(np.count_nonzero(live[:, 1] <= 7.0))), (float("inf"), 300.0)]
    series = [line for line in text.splitlines() if line.startswith("modeltui_feature_")]
    assert len(series) <= 100 * (10 + 2) + 100 * 10 + 100
    assert len(one_per_feature(text, "modeltui_feature_missing_total")) == 100


# ---- the counting itself ------------------------------------------------------------------------------


def test_small_and_large_batches_count_alike() -> None:
    features = load_reference(EXAMPLE, read_manifest(EXAMPLE))
    assert features is not None
    hist = FeatureHistograms(features)
    rng = np.random.default_rng(1)
    values = REFERENCE[rng.integers(0, len(REFERENCE), 1000)] * rng.choice([1.0, 1.3], size=(1000, 30))
    values[::9, 4] = np.nan
    whole = hist.take(values)
    assert whole is not None
    large = hist.count(whole)
    small = sum(hist.count(whole[i : i + 100]) for i in range(0, 1000, 100))
    assert (large == small).all()
    for j, f in enumerate(features):
        column = whole[:, j]
        column = column[~np.isnan(column)]
        want = np.bincount(np.searchsorted(f.bounds, column, side="left"), minlength=len(f.bounds) + 1)
        got = large[j * hist.width : j * hist.width + len(f.bounds) + 1]
        assert (got == want).all()
