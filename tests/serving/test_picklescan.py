"""The pickle scan: crafted pickles (os.system, builtins.eval, subprocess.Popen; plain and joblib-wrapped) are
refused with the global named, real scikit-learn models pass, and the runtime scans before it unpickles."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from daemon.serving.picklescan import allowed, scan_bytes, scan_file
from tests.helpers.paths import REPO

TWO = '{ name = "a", type = "double" }, { name = "b", type = "double" }'


class _System:
    def __reduce__(self) -> Any:
        return (os.system, ("touch /tmp/modeltui-picklescan-pwned",))


class _Eval:
    def __reduce__(self) -> Any:
        return (builtins.eval, ("1 + 1",))


class _Popen:
    def __reduce__(self) -> Any:
        return (subprocess.Popen, (["true"],))


EVIL = {"os.system": (_System, "posix.system"), "eval": (_Eval, "eval"), "Popen": (_Popen, "Popen")}


def _joblib(obj: Any, compress: Any = 0) -> bytes:
    out = io.BytesIO()
    joblib.dump(obj, out, compress=compress)
    return out.getvalue()


@pytest.mark.parametrize("evil", sorted(EVIL))
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_crafted_pickles_are_refused_naming_the_global(evil: str, protocol: int) -> None:
    cls, needle = EVIL[evil]
    result = scan_bytes(pickle.dumps({"model": cls()}, protocol=protocol), "model.pkl")
    assert not result.ok
    assert any(needle in g for g in result.refused)
    assert needle in result.summary()
    assert "model.pkl" in result.summary()


@pytest.mark.parametrize("evil", sorted(EVIL))
@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("xz", 3)])
def test_joblib_wrapped_pickles_are_refused(evil: str, compress: Any) -> None:
    cls, needle = EVIL[evil]
    # the payload after numpy arrays (their raw bytes sit between the opcodes) and inside an object array
    for obj in ({"w": np.arange(5000.0), "x": cls()}, {"w": np.arange(10), "o": np.array([1, cls()], dtype=object)}):
        result = scan_bytes(_joblib(obj, compress), "model.joblib")
        assert not result.ok
        assert any(needle in g for g in result.refused), result


def test_real_sklearn_models_pass_as_pickle_and_joblib() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((200, 4))
    y = (x[:, 0] > 0.5).astype(int)
    example = REPO / "examples" / "breast_cancer" / "model.skops"
    pipeline = sio.load(example, trusted=sio.get_untrusted_types(file=example))  # the example model itself
    models = [
        pipeline,
        LogisticRegression().fit(x, y),
        RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
        GradientBoostingClassifier(n_estimators=3).fit(x, y),
        HistGradientBoostingClassifier(max_iter=3).fit(x, y),
    ]
    for model in models:
        for protocol in (2, 4, 5):
            got = scan_bytes(pickle.dumps(model, protocol=protocol), "m.pkl")
            assert got.ok, (type(model).__name__, protocol, got)
        for compress in (0, 3, ("bz2", 3)):
            got = scan_bytes(_joblib(model, compress), "m.joblib")
            assert got.ok, (type(model).__name__, compress, got)
            assert got.summary().startswith("ok (")
            assert "all allowed" in got.summary()


def test_the_allow_list_refuses_what_runs_code() -> None:
    for module, name in [
        ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
        ("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("sklearn.utils", "Popen"),
        ("numpy.testing._private.utils", "runstring"), ("sklearn.utils._testing", "TempMemmap"),
        ("sklearn.base", "os.system"), ("scipy.io", "FortranFile"), ("joblib", "Parallel"),
    ]:  # fmt: skip
        assert not allowed(module, name), (module, name)
    for module, name in [
        ("builtins", "set"),
        ("builtins", "slice"),
        ("numpy", "dtype"),
        ("sklearn.tree._tree", "Tree"),
    ]:
        assert allowed(module, name)
    assert allowed("posix", "system", extra={"posix.system"})  # what an approval lets through, exactly


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    assert not scan_bytes(b"not a pickle at all", "x.pkl").ok
    assert not scan_bytes(pickle.dumps([1, 2, 3])[:-1], "x.pkl").ok  # no STOP
    missing = scan_file(tmp_path / "missing.pkl")
    assert not missing.ok
    assert "cannot read" in (missing.error or "")


# -- the runtime scans before it unpickles -----------------------------------------------------------------------


def _pickle_dir(path: Path, payload: bytes, name: str = "model.pkl") -> Path:
    path.mkdir()
    (path / name).write_bytes(payload)
    (path / "modeltui.toml").write_text(
        f'name = "p"\nflavor = "sklearn"\nmodel_file = "{name}"\ntrusted = true\n[signature]\ninputs = [{TWO}]\n'
    )
    return path


@pytest.mark.integration
@pytest.mark.parametrize("name", ["model.pkl", "model.joblib"])
def test_runtime_refuses_a_crafted_pickle_even_when_trusted(tmp_path: Path, serving_factory: Any, name: str) -> None:
    marker = Path("/tmp/modeltui-picklescan-pwned")
    marker.unlink(missing_ok=True)
    payload = pickle.dumps(_System()) if name.endswith(".pkl") else _joblib({"w": np.ones(9), "x": _System()})
    s = serving_factory(_pickle_dir(tmp_path / "m", payload, name)).start(ready=False)
    assert s.proc is not None
    assert s.proc.wait(30) == 3
    err = s.stderr()
    assert "pickle scan refused: posix.system" in err
    assert name in err
    assert not marker.exists()  # nothing was unpickled


@pytest.mark.integration
def test_runtime_loads_a_real_model_pickle_and_honours_the_daemons_allowance(
    tmp_path: Path, serving_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = np.random.default_rng(0).random((40, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
    s = serving_factory(_pickle_dir(tmp_path / "ok", _joblib(model), "model.joblib")).start()
    assert s.json("POST", "/predict", {"inputs": [[0.9, 0.1]]})[1]["predictions"] == [1]
    # a global the daemon allowed (an approved version) loads; _Eval's payload is harmless
    monkeypatch.setenv("MODELTUI_PICKLE_ALLOW", "builtins.eval")
    d = _pickle_dir(tmp_path / "approved", pickle.dumps({"m": model, "x": _Eval()}))
    s2 = serving_factory(d).start(ready=False)
    assert s2.proc is not None
    assert s2.proc.wait(30) == 3
    assert "has no predict method" in s2.stderr()
    assert "pickle scan" not in s2.stderr()


# -- names a scikit-learn module merely imports (review finding 3) ------------------------------------------------


def _crafted(module: str, name: str, args: tuple[Any, ...]) -> bytes:
    """A pickle of ``module.name(*args)`` (what unpickling would call), written opcode by opcode."""
    body = pickle.dumps(args, protocol=2)[2:-1]
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + body + b"R."


def _re_exports(made: Path) -> dict[str, bytes]:
    """The review's examples: each would create, truncate or connect something (or bind a method) if unpickled."""
    calls: dict[str, tuple[Any, ...]] = {
        "sklearn.datasets._rcv1.GzipFile": (str(made / "gz"), "wb"),
        "sklearn.datasets._base.NamedTemporaryFile": ("wb", -1, None, None, "", "", str(made), False),
        "sklearn.datasets._base.Path": (str(made / "p"),),
        "sklearn.callback._transport.Listener": (str(made / "sock"), "AF_UNIX"),
        "sklearn.callback._transport.Client": (str(made / "c"),),
        "sklearn.utils._available_if.MethodType": (1, 2),
    }
    return {full: _crafted(*full.rsplit(".", 1), args) for full, args in calls.items()}


def test_re_exported_names_are_refused_by_the_scan_and_the_loader(tmp_path: Path) -> None:
    from daemon.serving import flavors
    from daemon.serving.manifest import read_manifest

    made = tmp_path / "made"
    made.mkdir()
    for full, payload in _re_exports(made).items():
        module, _, name = full.rpartition(".")
        assert not allowed(module, name), full
        result = scan_bytes(payload, "model.pkl")
        assert not result.ok, (full, result)
        assert full in result.refused, (full, result)
        for file in ("model.pkl", "model.joblib"):
            d = _pickle_dir(tmp_path / f"{name}-{file}", payload, file)
            with pytest.raises(flavors.LoadError, match="pickle scan refused"):
                flavors.load_model(d, read_manifest(d))
            # the loader itself, without the scan in front of it: refused when the pickle names the global
            with pytest.raises(pickle.UnpicklingError, match="not allowed"):
                flavors._unpickle(d / file, Path(file).suffix, frozenset())
    assert list(made.iterdir()) == []  # nothing was created


def test_the_loader_checks_where_an_allowed_name_is_defined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Were a re-export ever on the allow-list, the loader still refuses it: the object's ``__module__`` is
    not the module the pickle names."""
    from daemon.serving import flavors, picklescan

    made = tmp_path / "made"
    made.mkdir()
    monkeypatch.setitem(picklescan._CLASSES, "sklearn.datasets._rcv1", frozenset({"GzipFile"}))
    monkeypatch.setattr(picklescan, "DENIED_MODULE_PARTS", frozenset())
    payload = _re_exports(made)["sklearn.datasets._rcv1.GzipFile"]
    assert scan_bytes(payload, "model.pkl").ok  # the (broken) list lets it through the scan
    for file in ("model.pkl", "model.joblib"):
        (tmp_path / file).write_bytes(payload)
        with pytest.raises(pickle.UnpicklingError, match=r"defined in gzip, not sklearn\.datasets\._rcv1"):
            flavors._unpickle(tmp_path / file, Path(file).suffix, frozenset())
    assert list(made.iterdir()) == []


def test_the_allow_list_is_what_the_installed_scikit_learn_defines() -> None:
    """daemon/serving/pickleallow.py is what tests/helpers/pickle_allow.py builds now, and each name in it is a
    class its module defines (regenerate with ``.venv/bin/python -m tests.helpers.pickle_allow``)."""
    import importlib

    from daemon.serving.pickleallow import NUMPY_TYPES, SKLEARN_CLASSES, SKLEARN_FUNCTIONS
    from tests.helpers.pickle_allow import TARGET, build, build_functions, build_numpy, render

    assert TARGET.read_text() == render(build(), build_functions(), build_numpy())
    assert "sklearn.datasets._rcv1" not in SKLEARN_CLASSES
    for module_name, names in SKLEARN_CLASSES.items():
        module = importlib.import_module(module_name)
        for name in names.split():
            obj = getattr(module, name)
            assert isinstance(obj, type), (module_name, name)
            assert obj.__module__ == module_name, (module_name, name, obj.__module__)
    for module_name, names in SKLEARN_FUNCTIONS.items():  # functions, each defined where it is named
        module = importlib.import_module(module_name)
        for name in names.split():
            obj = getattr(module, name)
            assert callable(obj), (module_name, name)
            assert not isinstance(obj, type), (module_name, name)
            assert obj.__module__ == module_name, (module_name, name, obj.__module__)
    for module_name, names in NUMPY_TYPES.items():  # scalar types and their dtype classes only
        module = importlib.import_module(module_name)
        for name in names.split():
            obj = getattr(module, name)
            assert isinstance(obj, type), (module_name, name)
            assert issubclass(obj, (np.number, np.bool_, np.dtype)), (module_name, name)
            assert obj.__module__ == module_name, (module_name, name, obj.__module__)


def test_library_prefixes_match_whole_module_names() -> None:
    assert allowed("xgboost.sklearn", "XGBClassifier")
    assert allowed("lightgbm.sklearn", "LGBMRegressor")
    for module in ("xgboost.sklearnx", "xgboost.sklearn_evil", "lightgbm.sklearnmod", "sklearnx.base", "sklearn"):
        assert not allowed(module, "XGBClassifier"), module
        assert not allowed(module, "LGBMRegressor"), module
    assert not allowed("sklearn.base", "NotDefinedThere")
    assert not allowed("numpy.random.extra", "Evil")


def simulate_old_joblib(monkeypatch: pytest.MonkeyPatch) -> None:
    """joblib before 1.6: an object array's nested pickle is read with a bare ``pickle.load``."""
    from joblib import numpy_pickle as jp  # type: ignore[import-untyped]

    original = jp.NumpyArrayWrapper.read_array

    def old_read_array(self: Any, unpickler: Any, *args: Any) -> Any:
        if self.dtype.hasobject:
            return pickle.load(unpickler.file_handle)
        return original(self, unpickler, *args)

    monkeypatch.setattr(jp.NumpyArrayWrapper, "read_array", old_read_array)


class _Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.path}",))


def test_the_loader_restricts_a_joblib_object_arrays_nested_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """joblib before 1.6 reads an object array's nested pickle with a bare ``pickle.load``: the loader reads
    it with its own restricted unpickler, whichever joblib is installed (simulated here)."""

    from daemon.serving import flavors

    simulate_old_joblib(monkeypatch)
    marker = tmp_path / "pwned"
    path = tmp_path / "model.joblib"
    path.write_bytes(_joblib({"w": np.arange(10), "o": np.array([1, _Touch(marker)], dtype=object)}))
    with pytest.raises(pickle.UnpicklingError, match=r"posix\.system is not allowed"):
        flavors._unpickle(path, ".joblib", frozenset())
    assert not marker.exists()
    # an allowed object array still loads
    path.write_bytes(_joblib({"w": np.arange(10), "o": np.array([1, "a", None], dtype=object)}))
    got = flavors._unpickle(path, ".joblib", frozenset())
    assert got["o"].tolist() == [1, "a", None]
    assert got["w"].tolist() == list(range(10))


# -- common fitted models: neighbours, univariate selectors, encoders (review finding) ----------------------------


def _common_models() -> dict[str, tuple[Any, str]]:
    """Unfitted estimators, each with the data it fits on ("num": 4 floats, "cat": 2 small integer codes)."""
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.ensemble import IsolationForest
    from sklearn.feature_selection import (
        SelectKBest,
        chi2,
        f_classif,
        f_regression,
        mutual_info_classif,
        mutual_info_regression,
        r_regression,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
    from sklearn.svm import SVC

    models: dict[str, tuple[Any, str]] = {}
    for algorithm in ("auto", "kd_tree", "ball_tree"):
        models[f"KNeighborsClassifier-{algorithm}"] = (KNeighborsClassifier(3, algorithm=algorithm), "num")
        models[f"KNeighborsRegressor-{algorithm}"] = (KNeighborsRegressor(3, algorithm=algorithm), "num")
        models[f"NearestNeighbors-{algorithm}"] = (NearestNeighbors(n_neighbors=3, algorithm=algorithm), "num")
    for score in (f_classif, f_regression, chi2, mutual_info_classif, mutual_info_regression, r_regression):
        models[f"SelectKBest-{score.__name__}"] = (SelectKBest(score, k=2), "num")
    models["OneHotEncoder"] = (OneHotEncoder(handle_unknown="ignore"), "cat")
    models["OrdinalEncoder"] = (OrdinalEncoder(), "cat")
    models["StandardScaler+LogisticRegression"] = (make_pipeline(StandardScaler(), LogisticRegression()), "num")
    models["ColumnTransformer-OneHotEncoder"] = (ColumnTransformer([("onehot", OneHotEncoder(), [0, 1])]), "cat")
    models["SimpleImputer"] = (SimpleImputer(), "num")
    models["PCA"] = (PCA(2), "num")
    models["TruncatedSVD"] = (TruncatedSVD(2, random_state=0), "num")
    models["KMeans"] = (KMeans(2, n_init=2, random_state=0), "num")
    models["IsolationForest"] = (IsolationForest(n_estimators=5, random_state=0), "num")
    models["SVC"] = (SVC(), "num")
    models["MLPClassifier"] = (MLPClassifier((5,), max_iter=500, random_state=0), "num")
    return models


def _outputs(model: Any, x: Any) -> Any:
    """What the model computes: predictions, a transform (dense), or a neighbour query."""
    if hasattr(model, "predict"):
        return np.asarray(model.predict(x))
    if hasattr(model, "transform"):
        out = model.transform(x)
        return out.toarray() if hasattr(out, "toarray") else np.asarray(out)
    return model.kneighbors(x)


@pytest.mark.parametrize("case", sorted(_common_models()))
def test_common_fitted_models_pass_the_scan_and_load_through_the_runtime(tmp_path: Path, case: str) -> None:
    """Nearest-neighbour models (their trees pickle ``newObj``), SelectKBest with each score function,
    encoders (``dtype=numpy.float64``) and other everyday estimators: the scan allows them, the runtime's
    restricted unpickler loads them, and the loaded model computes what the original did."""
    import warnings

    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline

    from daemon.serving import flavors
    from daemon.serving.manifest import read_manifest

    estimator, data = _common_models()[case]
    rng = np.random.default_rng(0)
    x = rng.random((80, 4)) if data == "num" else rng.integers(0, 3, (80, 2)).astype(float)
    y = (x[:, 0] > (0.5 if data == "num" else 1)).astype(int)
    target = x[:, 1] * 2 if "Regressor" in case or "regression" in case else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the small fits
        model = estimator.fit(x, target)
        # the loader serves what predicts: a transformer goes in front of a classifier
        served = model
        if not hasattr(model, "predict") and hasattr(model, "transform"):
            served = make_pipeline(clone(estimator), LogisticRegression()).fit(x, y)
    expected = _outputs(model, x)
    for protocol in (2, 4, 5):
        got = scan_bytes(pickle.dumps(model, protocol=protocol), "m.pkl")
        assert got.ok, (case, protocol, got)
    for compress in (0, 3):
        got = scan_bytes(_joblib(model, compress), "m.joblib")
        assert got.ok, (case, compress, got)
    for file, payload in (("model.pkl", pickle.dumps(model)), ("model.joblib", _joblib(model))):
        (tmp_path / file).write_bytes(payload)
        loaded = flavors._unpickle(tmp_path / file, Path(file).suffix, frozenset())
        for want, have in zip(np.atleast_1d(expected), np.atleast_1d(_outputs(loaded, x)), strict=True):
            np.testing.assert_array_equal(want, have)
    if not hasattr(served, "predict"):  # NearestNeighbors answers queries only
        d = _pickle_dir(tmp_path / "served", _joblib(served), "model.joblib")
        with pytest.raises(flavors.LoadError, match="has no predict method"):
            flavors.load_model(d, read_manifest(d))
        return
    for file, payload in (("model.pkl", pickle.dumps(served)), ("model.joblib", _joblib(served))):
        d = _pickle_dir(tmp_path / f"served-{file}", payload, file)
        loaded_model = flavors.load_model(d, read_manifest(d))
        assert loaded_model.predict(x) == served.predict(x).tolist(), (case, file)


def test_the_new_allowed_names_stay_narrow() -> None:
    """The score functions, ``newObj`` and numpy's scalar types are allowed only where they are defined, and
    nothing else of numpy's or those modules' functions comes with them."""
    for module, name in [
        ("sklearn.feature_selection._univariate_selection", "f_classif"),
        ("sklearn.feature_selection._mutual_info", "mutual_info_classif"),
        ("sklearn.neighbors._kd_tree", "newObj"),
        ("sklearn.neighbors._ball_tree", "newObj"),
        ("numpy", "float64"),
        ("numpy", "bool_"),
        ("numpy.dtypes", "Float64DType"),
    ]:
        assert allowed(module, name), (module, name)
    for module, name in [
        ("sklearn.feature_selection", "f_classif"),  # a re-export
        ("sklearn.feature_selection._univariate_selection", "check_array"),
        ("sklearn.neighbors", "newObj"),
        ("sklearn.neighbors._kd_tree", "KDTree.__new__"),
        ("numpy", "load"), ("numpy", "fromfile"), ("numpy", "loadtxt"), ("numpy", "save"), ("numpy", "memmap"),
        ("numpy", "frompyfunc"), ("numpy", "vectorize"), ("numpy", "object_"), ("numpy.core.numerictypes", "float64"),
        ("numpy.dtypes", "ObjectDType"),
    ]:  # fmt: skip
        assert not allowed(module, name), (module, name)


# -- old protocols and crafted joblib wrappers (second review, findings 1 and 6) ----------------------------------


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_old_protocol_pickles_pass_the_scan_and_load_through_the_runtime(tmp_path: Path, protocol: int) -> None:
    """Protocols 0-2 name Python 2's modules (``__builtin__.set``, ``copy_reg._reconstructor``), which the
    unpickler maps to today's (``_compat_pickle``): the scan and the loader map them the same way."""
    from daemon.serving import flavors
    from daemon.serving.manifest import read_manifest

    plain = {"set": {1, 2}, "frozenset": frozenset({3}), "slice": slice(1, 5, 2), "complex": complex(1, 2)}
    for kind, value in plain.items():
        payload = pickle.dumps(value, protocol=protocol)
        assert scan_bytes(payload, "m.pkl").ok, (kind, scan_bytes(payload, "m.pkl"))
        (tmp_path / f"{kind}.pkl").write_bytes(payload)
        assert flavors._unpickle(tmp_path / f"{kind}.pkl", ".pkl", frozenset()) == value, kind
    rng = np.random.default_rng(0)
    x = rng.random((60, 2))
    y = (x[:, 0] > 0.5).astype(int)
    model = LogisticRegression().fit(x, y)
    for file, payload in (
        ("model.pkl", pickle.dumps(model, protocol=protocol)),
        ("model.joblib", _joblib_protocol(model, protocol)),
    ):
        assert scan_bytes(payload, file).ok, (file, scan_bytes(payload, file))
        d = _pickle_dir(tmp_path / f"served-{file}", payload, file)
        assert flavors.load_model(d, read_manifest(d)).predict(x) == model.predict(x).tolist()


def _joblib_protocol(obj: Any, protocol: int) -> bytes:
    out = io.BytesIO()
    joblib.dump(obj, out, protocol=protocol)
    return out.getvalue()


def test_old_module_names_stay_as_narrow_as_the_new_ones() -> None:
    """The mapping opens nothing new: ``__builtin__.eval`` is ``builtins.eval``, refused at every protocol."""
    for protocol in (0, 2, 4):
        payload = bytes([0x80, protocol]) if protocol else b""
        payload += b"c__builtin__\neval\n(S'1'\ntR."
        assert not scan_bytes(payload, "m.pkl").ok
    assert not allowed("__builtin__", "eval")
    assert not allowed("copy_reg", "add_extension")
    # joblib's pre-0.21 copy under sklearn.externals cannot import today, and externals are never allowed
    assert not allowed("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper")


def _reduced_wrapper(nested: bytes, state: bytes) -> bytes:
    """A joblib stream whose object-array wrapper is made by REDUCE (``NumpyArrayWrapper(ndarray, (2,), "C",
    dtype("O"))``) and then given ``state`` by BUILD, without a dtype: ``nested`` follows as joblib would."""
    args = pickle.dumps((np.ndarray, (2,), "C", np.dtype("O")), protocol=2)[2:-1]
    return b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n" + args + b"R" + state + b"b" + nested + b"."


@pytest.mark.parametrize("state", [b"}", b"N}\x86", b"}X\x05\x00\x00\x00orderX\x01\x00\x00\x00Cs"])
def test_a_reduced_joblib_wrapper_cannot_sidestep_the_nested_restriction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: bytes
) -> None:
    """The loader decides "object array" from the built wrapper, not from the BUILD state: a wrapper whose dtype
    came through REDUCE still has its nested pickle read by the restricted unpickler (joblib before 1.6 would
    ``pickle.load`` it; simulated here). The scan refuses such a file outright."""

    from daemon.serving import flavors

    simulate_old_joblib(monkeypatch)
    marker = tmp_path / "pwned"
    path = tmp_path / "model.joblib"
    path.write_bytes(_reduced_wrapper(pickle.dumps(_Touch(marker), protocol=2), state))
    assert not scan_file(path).ok
    with pytest.raises(pickle.UnpicklingError, match=r"posix\.system is not allowed"):
        flavors._unpickle(path, ".joblib", frozenset())
    assert not marker.exists()
    # the same wrapper holding allowed objects reads as the array it describes
    path.write_bytes(_reduced_wrapper(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), state))
    assert flavors._unpickle(path, ".joblib", frozenset()).tolist() == [1, "a"]
