"""The search worker: a challenger by hyper-parameter search over a scikit-learn estimator.

    python -m daemon.maintain.search --model-dir CHAMPION_DIR --data TRAIN_CSV --target COL --metric f1 \\
        --spec JSON --output OUT_DIR

Never imported by the daemon (it builds the arguments with :func:`daemon.maintain.space.search_argv` and runs
this under its limits). It loads the champion as the serving runtime does (only flavor "sklearn"), reads the
CSV with the evaluation worker's rules (:func:`daemon.maintain.evaluate.read_data`: the signature's inputs, in
order, converted like the runtime converts CSV), and runs scikit-learn's ``HalvingRandomSearchCV``
(``method = "halving"``) or ``RandomizedSearchCV`` (``"random"``) with ``n_jobs=1``, ``random_state=seed`` and
the gate metric's scorer (:data:`daemon.maintain.space.SCORING`) over a clone of the champion's estimator (or
the spec's ``estimator`` class). The refitted best estimator becomes the challenger in ``OUT_DIR`` (an empty
directory): every other file of the champion's directory, the model under the champion's ``model_file`` name
(skops for ``.skops``, else joblib), and the champion's manifest with ``[params]`` saying what the challenger
is (:func:`challenger_params`) and ``trusted`` extended by the types the new file needs (unless
``trusted = true``). Its ``[metrics]`` are the champion's until the daemon scores it on the holdout and
records its own (``daemon/maintain/engine.py``).

On success it prints one JSON line on stdout: ``{"best_params": {...}, "cv_score": S, "candidates": n,
"evaluations": e, "fits": f, "seconds": t}``: ``candidates`` counts distinct parameter settings,
``evaluations`` also the survivors halving scores again on more rows, ``fits`` the cross-validation fits
(not the final refit); ``cv_score`` is in the metric's own sign (mae/rmse positive). Anything else goes
to stderr. When it cannot search it prints ``modeltui-search: REASON`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import sys
import time
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from daemon.maintain.evaluate import CLASSIFICATION, Refused, convert_targets, read_data, serve
from daemon.maintain.evaluate import _estimator as estimator_of
from daemon.maintain.space import SCORING, Range, SearchSpec, parse_search
from daemon.serving.flavors import PICKLE_SUFFIXES, LoadError, load_model
from daemon.serving.manifest import (
    MANIFEST_FILE,
    MAX_TRUSTED_TYPES,
    TYPE_NAME_RE,
    ManifestError,
    read_manifest,
    resolve_inside,
)

PREFIX = "modeltui-search: "
#: Manifest ``[params]`` keys: what daemon.protocol.names.check_tag_key accepts.
PARAM_KEY_MAX = 63
PARAM_TEXT_MAX = 200


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m daemon.maintain.search", description="Make a challenger by hyper-parameter search."
    )
    ap.add_argument("--model-dir", type=Path, required=True, help="the champion's model directory")
    ap.add_argument("--data", type=Path, required=True, help="training CSV with a header, holding the target column")
    ap.add_argument("--target", required=True, help="the label column")
    ap.add_argument("--metric", required=True, help="the gate metric: " + ", ".join(SCORING))
    ap.add_argument("--spec", required=True, help="the search spec as JSON ([maintenance.search])")
    ap.add_argument("--output", type=Path, required=True, help="an empty directory to write the challenger in")
    return ap.parse_args(argv)


# ---- the estimator and its space ---------------------------------------------------------------------------


def import_estimator(path: str) -> Any:
    """A new instance (default parameters) of the estimator class at the dotted ``path``."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Refused(f"estimator {path!r}: cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # the module's own code failed
        raise Refused(f"estimator {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise Refused(f"estimator {path!r}: module {module_name!r} has no {attr!r}")
    if not isinstance(cls, type):
        raise Refused(f"estimator {path!r} is a {type(cls).__name__}, not a class")
    if not (callable(getattr(cls, "fit", None)) and callable(getattr(cls, "get_params", None))):
        raise Refused(f"estimator {path!r} is not a scikit-learn estimator (it lacks fit or get_params)")
    try:
        return cls()
    except Exception as exc:
        raise Refused(f"estimator {path!r} cannot be built with its defaults: {type(exc).__name__}: {exc}") from None


def check_space(base: Any, spec: SearchSpec) -> None:
    valid = base.get_params(deep=True)
    unknown = [k for k in spec.space if k not in valid]
    if unknown:
        names = sorted(k for k in valid if not isinstance(valid[k], list | tuple) and not hasattr(valid[k], "fit"))
        shown = ", ".join(names[:25]) + (f" … ({len(names)} in all)" if len(names) > 25 else "")
        raise Refused(
            f"{type(base).__name__} has no parameter {', '.join(map(repr, unknown[:10]))}; its parameters "
            f"include: {shown}"
        )


class _LogInt:
    """Integers in [low, high], log-uniformly (scipy has no such distribution); ``rvs`` as sklearn expects."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def rvs(self, random_state: Any = None) -> int:
        rng = random_state if isinstance(random_state, np.random.RandomState) else np.random.default_rng(random_state)
        u = float(rng.uniform())
        value = math.exp(math.log(self.low) + u * (math.log(self.high + 1) - math.log(self.low)))
        return int(min(self.high, max(self.low, math.floor(value))))


def distributions(spec: SearchSpec) -> dict[str, Any]:
    from scipy.stats import loguniform, randint, uniform  # type: ignore[import-untyped]

    out: dict[str, Any] = {}
    for key, param in spec.space.items():
        if not isinstance(param, Range):
            out[key] = list(param)
        elif param.type == "int":
            low, high = int(param.low), int(param.high)
            out[key] = _LogInt(low, high) if param.log else randint(low, high + 1)
        elif param.log:
            out[key] = loguniform(param.low, param.high)
        else:
            out[key] = uniform(param.low, param.high - param.low)
    return out


# ---- data -----------------------------------------------------------------------------------------------


def targets_for(cells: list[str], champion: Any, target: str, metric: str) -> Any:
    if metric not in CLASSIFICATION:
        try:
            y = np.asarray([float(c) for c in cells], dtype=np.float64)
        except ValueError:
            raise Refused(f"target {target!r} holds values that are not numbers, which {metric} needs") from None
        if not np.isfinite(y).all():
            raise Refused(f"target {target!r} holds NaN or infinity")
        return y
    classes = getattr(champion, "classes_", None)
    if isinstance(classes, np.ndarray) and classes.ndim == 1 and len(classes):
        return np.asarray(
            convert_targets(cells, classes[0].item() if hasattr(classes[0], "item") else classes[0], target)
        )
    try:
        return np.asarray([int(c) for c in cells])
    except ValueError:
        return np.asarray(cells)


# ---- writing the challenger -----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-friendly version of a parameter value."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    return repr(value)[:PARAM_TEXT_MAX]


def _manifest_value(value: Any) -> bool | int | float | str:
    plain = _plain(value)
    if plain is None:
        return "None"
    if isinstance(plain, str):
        return plain[:PARAM_TEXT_MAX]
    return plain  # type: ignore[no-any-return]


def _short_names(effective: dict[str, Any]) -> dict[str, str]:
    """A Pipeline's ``step__param`` names by their last part, where that part names one parameter only."""
    found: dict[str, list[str]] = {}
    for full in effective:
        found.setdefault(full.rpartition("__")[2], []).append(full)
    return {short: names[0] for short, names in found.items() if len(names) == 1}


def _scalar(value: Any) -> bool:
    plain = value.item() if isinstance(value, np.generic) else value
    return plain is None or isinstance(plain, bool | int | float | str)


def challenger_params(
    champion: dict[str, Any], best: Any, best_params: dict[str, Any], same_estimator: bool
) -> dict[str, Any]:
    """The challenger's ``[params]``: its effective parameters, in the champion's names where they name the same
    ones, so ``diff`` compares like with like (``C = 1.0`` → ``C = 3.77``, never a stale ``C = 1.0`` beside
    ``clf__C = 3.77``).

    A champion key that names a parameter of the refitted estimator (exactly, or as the last part of one
    ``step__param``) gets that parameter's value; other champion keys (descriptions, the training script's
    own) stay as they were. Searched parameters no champion key names are added by their full names. With
    another estimator class nothing of the champion's describes the challenger: ``estimator`` (its class name)
    and the searched parameters."""
    effective: dict[str, Any] = best.get_params(deep=True)
    if not same_estimator:
        params: dict[str, Any] = {"estimator": type(best).__name__}
        covered: set[str] = set()
    else:
        params, covered = {}, set()
        shorts = _short_names(effective)
        for key, value in champion.items():
            full = key if key in effective else shorts.get(key)
            if full is not None and _scalar(effective[full]):
                params[key] = _manifest_value(effective[full])
                covered.add(full)
            else:
                params[key] = value
    for key, value in best_params.items():
        if key in covered:
            continue
        if len(key) > PARAM_KEY_MAX:
            print(f"parameter {key!r} is too long a name for [params]; left out", file=sys.stderr)
            continue
        params[key] = _manifest_value(value)
    return params


def write_challenger(
    champion_dir: Path,
    model_file: str,
    out: Path,
    best: Any,
    best_params: dict[str, Any],
    trusted: Any,
    same_estimator: bool = True,
) -> None:
    rel = Path(model_file)
    source_model = resolve_inside(champion_dir, model_file).resolve()

    def skip(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if (Path(directory) / n).resolve() == source_model}

    shutil.copytree(champion_dir, out, ignore=skip, dirs_exist_ok=True, symlinks=False)
    for copied in [out, *out.rglob("*")]:  # the champion's files are read-only (0400): the copies are ours to write
        if not copied.is_symlink():
            copied.chmod(copied.stat().st_mode | 0o200)
    target = out / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    new_trusted = trusted
    if rel.suffix.lower() == ".skops":
        import skops.io as sio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skops' notices about types it saves go nowhere useful
            blob = sio.dumps(best)
            untrusted = [str(t) for t in sio.get_untrusted_types(data=blob)]
        if trusted is not True:
            allowed = list(trusted) if isinstance(trusted, list) else []
            missing = sorted(t for t in set(untrusted) if t not in allowed)
            if missing:
                bad = [t for t in missing if not TYPE_NAME_RE.fullmatch(t)]
                if bad:
                    raise Refused(f"the best model needs type {bad[0]!r}, which a manifest's trusted list cannot name")
                if len(allowed) + len(missing) > MAX_TRUSTED_TYPES:
                    raise Refused(
                        f"the best model needs {len(allowed) + len(missing)} trusted types; a manifest lists at most "
                        f"{MAX_TRUSTED_TYPES} (set trusted = true in the champion's manifest if you trust them)"
                    )
                new_trusted = allowed + missing
                print(f"trusted extended with: {', '.join(missing)}", file=sys.stderr)
        target.write_bytes(blob)
    elif rel.suffix.lower() in PICKLE_SUFFIXES:
        import joblib  # type: ignore[import-untyped]

        joblib.dump(best, target)
    else:
        raise Refused(f"cannot save a scikit-learn model as {rel.name!r}: use .skops (or .joblib/.pkl)")

    import tomli_w

    raw = tomllib.loads((champion_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    raw["params"] = challenger_params(dict(raw.get("params") or {}), best, best_params, same_estimator)
    if new_trusted is not trusted:
        raw["trusted"] = new_trusted
    (out / MANIFEST_FILE).write_text(tomli_w.dumps(raw), encoding="utf-8")


# ---- the search -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    try:
        spec = parse_search(args.spec)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    metric = str(args.metric)
    if metric not in SCORING:
        raise Refused(f"unknown metric {metric!r}; the search knows {', '.join(SCORING)}")
    model_dir: Path = args.model_dir.resolve()
    out: Path = args.output.resolve()
    if not out.is_dir() or any(out.iterdir()):
        raise Refused(f"{out} is not an empty directory")
    try:
        manifest = read_manifest(model_dir)
    except ManifestError as exc:
        raise Refused(f"the champion's manifest cannot be used: {exc}") from None
    if manifest.flavor != "sklearn":
        raise Refused(f"only scikit-learn models (flavor sklearn) can be searched; this one is {manifest.flavor!r}")
    schema, rows, cells = read_data(args.data, args.target, manifest.inputs)
    try:
        model = load_model(model_dir, manifest)
    except LoadError as exc:
        raise Refused(f"cannot load the champion: {exc}") from None
    champion = estimator_of(model)
    if champion is None:
        raise Refused("cannot find the champion's scikit-learn estimator")

    from sklearn.base import clone, is_classifier, is_regressor

    if spec.estimator is None:
        try:
            base = clone(champion)
        except Exception as exc:
            raise Refused(f"cannot clone the champion's {type(champion).__name__}: {exc}") from None
    else:
        base = import_estimator(spec.estimator)
    check_space(base, spec)
    if metric in CLASSIFICATION and is_regressor(base):
        raise Refused(f"the metric {metric} needs a classifier; {type(base).__name__} is a regressor")
    if metric not in CLASSIFICATION and is_classifier(base):
        raise Refused(f"the metric {metric} needs a regressor; {type(base).__name__} is a classifier")

    x = schema.to_array(rows)
    y = targets_for(cells, champion, args.target, metric)
    if len(y) < 2 * spec.cv:
        raise Refused(f"{len(y)} rows are too few for {spec.cv}-fold cross-validation")

    search = build_search(base, spec, metric)
    print(
        f"searching {type(base).__name__} ({spec.method}, {spec.n_candidates} candidates, cv={spec.cv}) "
        f"on {len(y)} rows for {metric}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        file=sys.stderr,
    )
    with warnings.catch_warnings():
        # Candidates that fail to fit or converge are the search's business: their warnings go to the log once.
        warnings.simplefilter("default")
        try:
            search.fit(x, y)
        except MemoryError:
            raise
        except ValueError as exc:
            text = str(exc)
            if "fits failed" in text:
                first = text.strip().splitlines()
                raise Refused(f"every fit of the search failed: {' '.join(first[:3])[:600]}") from None
            raise Refused(f"the search failed: {type(exc).__name__}: {text[:600]}") from None
        except Exception as exc:
            raise Refused(f"the search failed: {type(exc).__name__}: {str(exc)[:600]}") from None
    best_score = float(search.best_score_)
    if not math.isfinite(best_score):
        raise Refused("every candidate failed to fit or score (the best cross-validation score is NaN)")
    if SCORING[metric].startswith("neg_"):
        best_score = -best_score
    best_params = {k: _plain(v) for k, v in search.best_params_.items()}
    write_challenger(
        model_dir,
        manifest.model_file,
        out,
        search.best_estimator_,
        search.best_params_,
        _trusted(model_dir),
        same_estimator=spec.estimator is None,
    )
    evaluations = len(search.cv_results_["params"])  # halving evaluates survivors again on more rows
    candidates = len({json.dumps(p, sort_keys=True, default=repr) for p in search.cv_results_["params"]})
    return {
        "best_params": best_params,
        "cv_score": best_score,
        "candidates": candidates,
        "evaluations": evaluations,
        "fits": evaluations * int(search.n_splits_),
        "seconds": round(time.monotonic() - started, 3),
    }


def build_search(base: Any, spec: SearchSpec, metric: str) -> Any:
    common: dict[str, Any] = {
        "scoring": SCORING[metric],
        "cv": spec.cv,
        "n_jobs": 1,
        "random_state": spec.seed,
        "refit": True,
        "error_score": np.nan,
    }
    if spec.method == "random":
        from sklearn.model_selection import RandomizedSearchCV

        return RandomizedSearchCV(base, distributions(spec), n_iter=spec.n_candidates, **common)
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV

    return HalvingRandomSearchCV(
        base,
        distributions(spec),
        n_candidates=spec.n_candidates,
        factor=spec.factor,
        resource="n_samples",
        min_resources="exhaust",
        **common,
    )


def _trusted(model_dir: Path) -> Any:
    raw = tomllib.loads((model_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    return raw.get("trusted", False)


def main(argv: list[str] | None = None) -> int:
    return serve(lambda: run(_args(argv)), PREFIX)


if __name__ == "__main__":
    raise SystemExit(main())
