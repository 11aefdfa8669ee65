"""The fast forest path answers exactly what scikit-learn answers, and steps aside when it cannot."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from daemon.serving.treefast import FastForest, fast_predict


def _inputs(x: np.ndarray, forest: Any) -> np.ndarray:
    """Random rows over the training range, plus rows set exactly on split thresholds."""
    rng = np.random.default_rng(7)
    rows = rng.uniform(x.min(axis=0) - 1, x.max(axis=0) + 1, size=(3000, x.shape[1]))
    fast = FastForest(forest, hasattr(forest, "classes_"))
    inner = np.flatnonzero(fast.left != np.arange(len(fast.left)))[:1000]
    rows[: len(inner)][np.arange(len(inner)), fast.feature[inner]] = fast.threshold[inner]
    return rows


@pytest.mark.parametrize(
    ("model", "classes"),
    [
        (RandomForestClassifier(n_estimators=30, random_state=0), 2),
        (RandomForestClassifier(n_estimators=30, max_depth=6, random_state=1), 4),
        (ExtraTreesClassifier(n_estimators=20, random_state=2), 3),
    ],
    ids=["rf-binary", "rf-4-classes-shallow", "extra-trees-3-classes"],
)
def test_classifiers_give_identical_predictions(model: Any, classes: int) -> None:
    x, y = make_classification(n_samples=2000, n_features=6, n_informative=4, n_classes=classes, random_state=0)
    labels = np.array(["alpha", "beta", "gamma", "delta"])[y]  # string classes come back as they were
    model.fit(x, labels)
    predict = fast_predict(model)
    assert predict is not None
    rows = _inputs(x, model)
    assert np.array_equal(predict(rows), model.predict(rows))
    assert np.array_equal(predict(rows[:1]), model.predict(rows[:1]))


def test_regressor_gives_identical_predictions() -> None:
    x, y = make_regression(n_samples=1500, n_features=5, random_state=0)
    model = RandomForestRegressor(n_estimators=25, random_state=0).fit(x, y)
    predict = fast_predict(model)
    assert predict is not None
    rows = _inputs(x, model)
    assert np.array_equal(predict(rows), model.predict(rows))  # bit for bit, not approximately


def test_pipeline_ending_in_a_forest_uses_the_fast_path_after_its_transforms() -> None:
    x, y = make_classification(n_samples=1000, n_features=5, random_state=3)
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=15, random_state=0)).fit(x, y)
    predict = fast_predict(model)
    assert predict is not None
    rows = np.random.default_rng(0).normal(size=(2000, 5)) * 2
    assert np.array_equal(predict(rows), model.predict(rows))


def test_non_finite_rows_go_to_the_model_itself() -> None:
    x, y = make_classification(n_samples=500, n_features=4, random_state=0)
    x[::7, 1] = np.nan  # scikit-learn forests learn where missing values go; the fast path does not
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    predict = fast_predict(model)
    assert predict is not None
    rows = np.array([[0.1, np.nan, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0]])
    assert np.array_equal(predict(rows), model.predict(rows))


def test_other_estimators_keep_their_own_predict() -> None:
    x, y = make_classification(n_samples=300, n_features=4, random_state=0)
    assert fast_predict(GradientBoostingClassifier(n_estimators=5).fit(x, y)) is None
    assert fast_predict(make_pipeline(StandardScaler())) is None


def test_exact_ties_break_like_scikit_learn() -> None:
    """Leaf values are fractions already (scikit-learn >= 1.4): normalising them again moved the last bit of
    some and flipped this tie (probabilities 0.4875 / 0.4875 / 0.025) to the other class."""
    rng = np.random.default_rng(6)
    for _ in range(3163):  # the random stream of the search that found this model
        n = int(rng.integers(20, 60))
        x = rng.integers(0, 5, size=(n, 3)).astype(float)
        y = rng.integers(0, 3, size=n)
        rng.choice([2, 4, 6])
        rng.integers(1, 4)
    model = RandomForestClassifier(n_estimators=4, max_depth=3, random_state=3162).fit(x, y)
    row = np.array([[4.0, 4.0, 1.0]])
    proba = model.predict_proba(row)[0]
    assert proba[0] == proba[1]  # an exact tie
    predict = fast_predict(model)
    assert predict is not None
    assert np.array_equal(predict(row), model.predict(row))
    grid = np.array([[a, b, c] for a in range(5) for b in range(5) for c in range(5)], dtype=float)
    assert np.array_equal(predict(grid), model.predict(grid))
