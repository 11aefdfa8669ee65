"""The search space of the built-in hyper-parameter search: ``[maintenance.search]`` of a manifest, or the
JSON given to ``modeltui maintain set NAME search='{...}'``.

Pure validation (pydantic only: the daemon imports this module, and never scikit-learn nor scipy). The
search itself runs in a worker process, ``python -m daemon.maintain.search`` (:func:`search_argv`).

Example (TOML)::

    [maintenance.search]
    method = "halving"            # or "random"
    n_candidates = 20
    cv = 3
    [maintenance.search.space]
    clf__C = { low = 0.001, high = 100.0, log = true }
    clf__class_weight = ["balanced", "none"]
    clf__max_iter = { low = 100, high = 2000, type = "int" }

A list is a categorical choice (scalars: booleans, numbers, strings; JSON ``null`` is Python's None); a
table ``{low, high, log = false, type = "float" | "int"}`` is a range sampled uniformly (log-uniformly with
``log = true``), both ends included.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, ValidationError, field_validator

#: A gate metric → the scikit-learn scorer the search maximises (the macro averages the evaluation uses).
SCORING: dict[str, str] = {
    "accuracy": "accuracy",
    "precision": "precision_macro",
    "recall": "recall_macro",
    "f1": "f1_macro",
    "roc_auc": "roc_auc",
    "mae": "neg_mean_absolute_error",
    "rmse": "neg_root_mean_squared_error",
    "r2": "r2",
}

#: A parameter name as ``estimator.get_params()`` spells it, ``step__param`` included.
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_KEY = 200
MAX_PARAMS = 100
MAX_CHOICES = 1000
MAX_CHOICE_TEXT = 200
#: The dotted path of an estimator class: "sklearn.ensemble.RandomForestClassifier".
ESTIMATOR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
RANGE_KEYS = ("low", "high", "log", "type")

Scalar = bool | int | float | str | None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Range(BaseModel):
    """``{low, high, log, type}``: sampled uniformly (log-uniformly when ``log``) in [low, high]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: float
    high: float
    log: bool = False
    type: Literal["float", "int"] = "float"


def _number(raw: dict[str, Any], key: str) -> float:
    if key not in raw:
        raise ValueError(f"a range needs {key} (a range is {{low, high, log = false, type = 'float' | 'int'}})")
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, not {_short(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, not {value!r}")
    return float(value)


def _range(raw: dict[str, Any]) -> Range:
    unknown = [k for k in raw if k not in RANGE_KEYS]
    if unknown:
        raise ValueError(f"unknown key {_short(unknown[0])} in a range; a range has {', '.join(RANGE_KEYS)}")
    low, high = _number(raw, "low"), _number(raw, "high")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"log must be true or false, not {_short(log)}")
    kind = raw.get("type", "float")
    if kind not in ("float", "int"):
        raise ValueError(f"type must be 'float' or 'int', not {_short(kind)}")
    shown = {k: (int(v) if isinstance(v, float) and v.is_integer() else v) for k, v in (("low", low), ("high", high))}
    if not low < high:
        raise ValueError(f"low ({shown['low']}) must be below high ({shown['high']})")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, not {shown['low']}")
    if kind == "int":
        for key, value in (("low", raw["low"]), ("high", raw["high"])):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"an int range needs whole-number bounds; {key} is {value!r}")
    return Range(low=low, high=high, log=log, type=kind)


def _choices(raw: list[Any] | tuple[Any, ...]) -> tuple[Scalar, ...]:
    if not raw:
        raise ValueError("an empty list: give at least one value to choose from")
    if len(raw) > MAX_CHOICES:
        raise ValueError(f"{len(raw)} choices; the limit is {MAX_CHOICES}")
    for i, value in enumerate(raw):
        if value is None or isinstance(value, bool | int | str):
            if isinstance(value, str) and len(value) > MAX_CHOICE_TEXT:
                raise ValueError(f"choice {i} is a string of {len(value)} characters; the limit is {MAX_CHOICE_TEXT}")
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"choice {i} is {value!r}; numbers must be finite")
            continue
        raise ValueError(
            f"choice {i} is {_short(value)}: choices are booleans, numbers, strings or null "
            "(a table means a range {low, high, ...})"
        )
    return tuple(raw)


def _param(value: Any) -> tuple[Scalar, ...] | Range:
    if isinstance(value, Range):
        return value
    if isinstance(value, list | tuple):
        return _choices(value)
    if isinstance(value, dict):
        return _range(value)
    raise ValueError(
        f"{_short(value)} is neither a list of choices nor a range table {{low, high, log = false, type = 'float'}}"
    )


def _dump_param(value: tuple[Scalar, ...] | Range) -> list[Scalar] | dict[str, Any]:
    return value.model_dump() if isinstance(value, Range) else list(value)


#: A categorical choice (a tuple of scalars) or a :class:`Range`.
Param = Annotated[
    tuple[Scalar, ...] | Range,
    PlainValidator(_param),
    PlainSerializer(_dump_param, return_type=list[Scalar] | dict[str, Any]),
]


class SearchSpec(BaseModel):
    """How the built-in search makes a challenger (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    method: Literal["halving", "random"] = "halving"
    """"halving": scikit-learn's HalvingRandomSearchCV (successive halving over samples); "random":
    RandomizedSearchCV (every candidate on all the data)."""
    estimator: Annotated[str, Field(max_length=300)] | None = None
    """A dotted class path such as "sklearn.ensemble.RandomForestClassifier", built with its defaults; None
    = a clone of the champion's own estimator (e.g. its Pipeline: params like "clf__C")."""
    space: dict[str, Param]
    n_candidates: Annotated[int, Field(ge=1, le=10_000)] = 20
    cv: Annotated[int, Field(ge=2, le=20)] = 3
    factor: Annotated[int, Field(ge=2, le=10)] = 3
    """Halving only: the fraction (1/factor) of candidates kept at each iteration."""
    seed: int = 0

    @field_validator("estimator")
    @classmethod
    def _estimator(cls, value: str | None) -> str | None:
        if value is not None and not ESTIMATOR_RE.fullmatch(value):
            raise ValueError(
                f"{_short(value)} is not a dotted class path such as 'sklearn.ensemble.RandomForestClassifier'"
            )
        return value

    @field_validator("space", mode="before")
    @classmethod
    def _space(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"must be a table of parameter name → choices or range, not {type(value).__name__}")
        if not value:
            raise ValueError("is empty: name at least one parameter to search (e.g. clf__C)")
        if len(value) > MAX_PARAMS:
            raise ValueError(f"has {len(value)} parameters; the limit is {MAX_PARAMS}")
        for key in value:
            if not isinstance(key, str) or len(key) > MAX_KEY or not KEY_RE.fullmatch(key):
                raise ValueError(
                    f"invalid parameter name {_short(key)}: use letters, digits and '_' as scikit-learn's "
                    "get_params() spells them (e.g. C, or clf__C for a Pipeline step)"
                )
        return value


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(["search", *map(str, loc)])


def _message(error: Any) -> str:
    if error.get("type") == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return str(error["msg"])


def parse_search(value: Any) -> SearchSpec:
    """A :class:`SearchSpec` from a dict (a manifest's ``[maintenance.search]`` table), a JSON object text
    (``maintain set NAME search='{...}'``) or a SearchSpec; raises ValueError saying what is wrong, where."""
    if isinstance(value, SearchSpec):
        return value
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"search: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise ValueError(f'search must be a table / JSON object such as {{"space": {{...}}}}, not {kind}')
    try:
        return SearchSpec.model_validate(value)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{_where(e['loc'])}: {_message(e)}" for e in exc.errors())) from None


def search_argv(model_dir: Path, data: Path, target: str, metric: str, spec: SearchSpec, output: Path) -> list[str]:
    """The worker's arguments after the interpreter: ``["-m", "daemon.maintain.search", ...]``.

    ``model_dir`` is the champion, ``data`` the training CSV (with the ``target`` column), ``metric`` a gate
    metric (a key of :data:`SCORING`), ``output`` an empty directory for the challenger. Paths are made
    absolute (the worker may run with another cwd)."""
    if metric not in SCORING:
        raise ValueError(f"unknown metric {metric!r}; the search knows {', '.join(SCORING)}")
    return [
        "-m",
        "daemon.maintain.search",
        "--model-dir",
        str(Path(model_dir).resolve()),
        "--data",
        str(Path(data).resolve()),
        "--target",
        target,
        "--metric",
        metric,
        "--spec",
        spec.model_dump_json(),
        "--output",
        str(Path(output).resolve()),
    ]
