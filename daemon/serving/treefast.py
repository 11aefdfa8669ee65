"""A faster ``predict`` for scikit-learn random forests and extra-trees, with identical answers.

scikit-learn walks each tree in its own call (about 40 µs of overhead per tree, 2 ms for 50 trees) however
few rows there are, so a server answering one row per request spends its time there. Here every tree of the
forest is one set of flat node arrays and all rows descend all trees at once, one numpy step per tree level.

The answers are the same bits scikit-learn computes: rows are cast to float32 as scikit-learn does, each
tree's leaf distribution is normalised the same way, probabilities are summed tree by tree in the same
order and divided by the number of trees, and the class is the first argmax. Anything this does not cover
(NaN inputs, multi-output, other estimators) goes to the model's own ``predict``; and the fast path is only
used after it has matched the model on a probe batch when loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Predict = Callable[[npt.NDArray[Any]], Any]
PROBE_ROWS = 512


def _leaf_values_are_fractions() -> bool:
    """scikit-learn 1.4 made classifier trees store class fractions in ``tree_.value`` and stopped
    normalising them in ``predict_proba``; dividing again would change the last bit and flip exact ties."""
    import sklearn

    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    return (major, minor) >= (1, 4)


class FastForest:
    def __init__(self, forest: Any, classifier: bool) -> None:
        trees = [e.tree_ for e in forest.estimators_]
        sizes = [t.node_count for t in trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        self.roots = offsets
        index = np.arange(sum(sizes), dtype=np.intp)
        left = np.concatenate([t.children_left.astype(np.intp) + o for t, o in zip(trees, offsets, strict=True)])
        right = np.concatenate([t.children_right.astype(np.intp) + o for t, o in zip(trees, offsets, strict=True)])
        leaf = np.concatenate([t.children_left == -1 for t in trees])
        self.left = np.where(leaf, index, left)  # a leaf points to itself: extra levels change nothing
        self.right = np.where(leaf, index, right)
        self.feature = np.where(leaf, 0, np.concatenate([t.feature for t in trees])).astype(np.intp)
        self.threshold = np.concatenate([t.threshold for t in trees]).astype(np.float64)
        self.depth = max(t.max_depth for t in trees)
        self.n_trees = len(trees)
        self.n_features = int(forest.n_features_in_)
        self.classifier = classifier
        if classifier:
            self.classes = np.asarray(forest.classes_)
            n_classes = len(self.classes)
            values = np.concatenate([t.value[:, 0, :n_classes] for t in trees]).astype(np.float64)
            if not _leaf_values_are_fractions():  # scikit-learn < 1.4 normalised in predict_proba
                normalizer = values.sum(axis=1)[:, np.newaxis]
                normalizer[normalizer == 0.0] = 1.0
                values = values / normalizer
            self.leaf_values = values  # what DecisionTreeClassifier.predict_proba returns per leaf
        else:
            self.leaf_values = np.concatenate([t.value[:, 0, 0] for t in trees]).astype(np.float64)

    def leaves(self, x32: npt.NDArray[np.float32]) -> npt.NDArray[np.intp]:
        """The leaf each row reaches in each tree: shape (rows, trees)."""
        rows = np.arange(len(x32))[:, np.newaxis]
        node = np.broadcast_to(self.roots, (len(x32), self.n_trees))
        for level in range(self.depth):
            # float32 inputs against float64 thresholds, compared in float64: as the Cython tree does.
            go_left = x32[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
            if level % 8 == 7 and (self.left[node] == node).all():
                break
        return node

    def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[Any] | None:
        """Predictions, or None when this batch is not for the fast path (the caller uses the model)."""
        if x.ndim != 2 or x.shape[1] != self.n_features:
            return None
        x32 = np.asarray(x, dtype=np.float32)
        if not np.isfinite(x32).all():
            return None
        leaves = self.leaves(x32)
        total = np.zeros((len(x32), *self.leaf_values.shape[1:]), dtype=np.float64)
        for t in range(self.n_trees):  # tree by tree, like scikit-learn's accumulation
            total += self.leaf_values[leaves[:, t]]
        total /= self.n_trees
        if not self.classifier:
            return total
        return self.classes.take(np.argmax(total, axis=1), axis=0)  # type: ignore[no-any-return]


def _probe(fast: FastForest) -> npt.NDArray[np.float64]:
    """Rows that land on both sides of many split thresholds, seeded for repeatability."""
    rng = np.random.default_rng(0)
    inner = (fast.left != np.arange(len(fast.left))) & np.isfinite(fast.threshold)
    lo = np.zeros(fast.n_features)
    hi = np.ones(fast.n_features)
    for f in range(fast.n_features):
        thresholds = fast.threshold[inner & (fast.feature == f)]
        if thresholds.size:
            lo[f], hi[f] = thresholds.min() - 1.0, thresholds.max() + 1.0
    rows = rng.uniform(lo, hi, size=(PROBE_ROWS, fast.n_features))
    picks = fast.threshold[inner][rng.integers(0, max(int(inner.sum()), 1), size=PROBE_ROWS)] if inner.any() else 0
    column = rng.integers(0, fast.n_features, size=PROBE_ROWS)
    rows[np.arange(PROBE_ROWS), column] = picks  # exactly on a threshold: the <= edge
    return rows


def fast_predict(model: Any) -> Predict | None:
    """A drop-in ``predict`` for a forest (or a Pipeline ending in one), or None when none applies."""
    try:
        from sklearn.ensemble import (
            ExtraTreesClassifier,
            ExtraTreesRegressor,
            RandomForestClassifier,
            RandomForestRegressor,
        )
        from sklearn.pipeline import Pipeline
    except ImportError:
        return None
    head: Any = None
    forest = model
    if isinstance(model, Pipeline):
        head, forest = model[:-1], model[-1]
    classifier = isinstance(forest, RandomForestClassifier | ExtraTreesClassifier)
    if not (classifier or isinstance(forest, RandomForestRegressor | ExtraTreesRegressor)):
        return None
    if getattr(forest, "n_outputs_", 1) != 1 or not hasattr(forest, "estimators_"):
        return None
    fast = FastForest(forest, classifier)
    original = model.predict

    def predict(x: npt.NDArray[Any]) -> Any:
        features = head.transform(x) if head is not None else x
        out = fast.predict(np.asarray(features))
        return original(x) if out is None else out

    probe = _probe(fast)
    if not np.array_equal(fast.predict(probe), forest.predict(probe)):  # type: ignore[arg-type]
        return None
    return predict
