"""Model loaders. Each returns a :class:`Model` whose ``predict`` takes one 2-D batch and returns one
prediction per row. Heavy libraries are imported here, lazily, by the flavor that needs them."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .manifest import ManifestError, ServingManifest, resolve_inside
from .picklescan import PICKLE_ALLOW_ENV as PICKLE_ALLOW_ENV
from .picklescan import PICKLE_SUFFIXES as PICKLE_SUFFIXES
from .picklescan import RestrictedGlobals, scan_file
from .treefast import fast_predict


class LoadError(Exception):
    """The model cannot be loaded; the message says why and what to do."""


class Model:
    """A loaded model: ``predict(X)`` → a 1-D or 2-D array (or a sequence) with one entry per row."""

    def __init__(
        self,
        flavor: str,
        predict: Callable[..., Any],
        detail: str,
        classes: list[Any] | None = None,
        *,
        takes_params: bool = False,
    ) -> None:
        self.flavor = flavor
        self.detail = detail
        #: the labels a classifier can predict, when the model says (scikit-learn's ``classes_``)
        self.classes = classes
        self.takes_params = takes_params
        """``predict`` has a ``params`` argument: it gets a request's ``params`` (MLflow's inference
        parameters); other models ignore them, as MLflow ignores them for a predict without one."""
        self._predict = predict

    def predict(self, batch: npt.NDArray[Any], params: dict[str, Any] | None = None) -> list[Any]:
        out = self._predict(batch, params=params) if self.takes_params else self._predict(batch)
        if isinstance(out, tuple):
            out = list(out)
        if isinstance(out, np.ndarray):
            values: list[Any] = out.tolist()
        elif isinstance(out, list):
            values = [v.tolist() if isinstance(v, np.ndarray | np.generic) else v for v in out]
        else:
            try:
                values = list(out)
            except TypeError:
                raise TypeError(f"predict returned {type(out).__name__}, not one prediction per row") from None
        if len(values) != len(batch):
            raise ValueError(f"predict returned {len(values)} predictions for {len(batch)} rows")
        return values


def load_model(model_dir: Path, manifest: ServingManifest) -> Model:
    loader = {"sklearn": _load_sklearn, "onnx": _load_onnx, "python": _load_python}[manifest.flavor]
    try:
        return loader(model_dir, manifest)
    except ManifestError as exc:
        raise LoadError(str(exc)) from None


def _load_sklearn(model_dir: Path, manifest: ServingManifest) -> Model:
    path = resolve_inside(model_dir, manifest.model_file)
    if not path.is_file():
        raise LoadError(f"model file {manifest.model_file!r} does not exist in {model_dir}")
    suffix = path.suffix.lower()
    if suffix == ".skops":
        try:
            import skops.io as sio
        except ImportError as exc:
            raise LoadError(f"the sklearn flavor needs skops and scikit-learn installed: {exc}") from None
        data = path.read_bytes()
        try:
            untrusted = [str(t) for t in sio.get_untrusted_types(data=data)]
        except Exception as exc:
            raise LoadError(f"{manifest.model_file} is not a readable skops file: {exc}") from None
        allowed = set(manifest.trusted) if isinstance(manifest.trusted, tuple) else set()
        refused = [t for t in untrusted if t not in allowed] if manifest.trusted is not True else []
        if refused:
            shown = ", ".join(refused[:10]) + (f" (and {len(refused) - 10} more)" if len(refused) > 10 else "")
            raise LoadError(
                f"refusing to load {manifest.model_file}: it contains types skops does not trust by default: "
                f"{shown}. Loading them can run code from those modules; if you trust them, list them in "
                f'modeltui.toml (trusted = ["{refused[0]}", ...]) or set trusted = true'
            )
        try:
            model = sio.loads(data, trusted=untrusted)
        except Exception as exc:
            raise LoadError(f"cannot load {manifest.model_file} with skops: {exc}") from None
    elif suffix in PICKLE_SUFFIXES:
        if manifest.trusted is not True:  # a type list cannot make a pickle safe
            raise LoadError(
                f"refusing to load {manifest.model_file}: pickle/joblib files run arbitrary code when loaded. "
                f"Save the model with skops, or set trusted = true in modeltui.toml if you trust this file"
            )
        allow = [g for g in os.environ.get(PICKLE_ALLOW_ENV, "").split(",") if g]
        scan = scan_file(path, manifest.model_file, allow)  # defence in depth: the daemon scanned it at push
        if not scan.ok:
            raise LoadError(
                f"refusing to load {manifest.model_file}: pickle scan {scan.summary()}. Unpickling it would "
                f"import those globals, which can run code; an admin can approve the version "
                f"(modeltui approve-code) or save the model with skops"
            )
        try:
            model = _unpickle(path, suffix, frozenset(allow))
        except Exception as exc:
            raise LoadError(f"cannot load {manifest.model_file}: {exc}") from None
    else:
        raise LoadError(f"the sklearn flavor loads .skops (or, when trusted, .joblib/.pkl) files, not {path.name!r}")
    predict = getattr(model, "predict", None)
    if not callable(predict):
        raise LoadError(f"{manifest.model_file} holds a {type(model).__name__}, which has no predict method")
    classes = getattr(model, "classes_", None)  # a 2-D classes_ (multi-output) gives no single class list
    known = classes.tolist() if isinstance(classes, np.ndarray) and classes.ndim == 1 else None
    fast = fast_predict(model)
    if fast is not None:
        return Model("sklearn", fast, f"{type(model).__name__}, fast forest path", known)
    return Model("sklearn", predict, type(model).__name__, known)


def _unpickle(path: Path, suffix: str, allow: frozenset[str]) -> Any:
    """Unpickle the (scanned) file through an unpickler that loads only the allowed globals, each from the module
    that defines it: what the scan could not see (a name re-exported from elsewhere) is refused here."""
    import pickle

    with path.open("rb") as fh:
        if suffix != ".joblib":
            restricted = type("_Restricted", (RestrictedGlobals, pickle.Unpickler), {"allow_extra": allow})
            return restricted(fh).load()
        jp: Any = importlib.import_module("joblib.numpy_pickle")
        restricted = _joblib_unpickler(jp, allow)
        with jp._validate_fileobject_and_memmap(fh, str(path), None) as (fobj, _):
            if isinstance(fobj, str):  # joblib < 0.10's format (the scan refuses it too)
                raise LoadError("an old joblib format (before joblib 0.10): save it again")
            try:
                unpickler = restricted(str(path), fobj, True)
            except TypeError:  # joblib before 1.5 has no ensure_native_byte_order argument
                unpickler = restricted(str(path), fobj)
            return unpickler.load()


def _joblib_unpickler(jp: Any, allow: frozenset[str]) -> Any:
    """joblib's unpickler with the restricted ``find_class``, reading an object array's nested pickle stream
    with a restricted unpickler too (joblib before 1.6 reads it with a bare ``pickle.load``)."""
    import pickle

    nested = type("_Nested", (RestrictedGlobals, pickle.Unpickler), {"allow_extra": allow})

    def load_build(self: Any) -> None:
        # Build first, then ask the wrapper itself: its dtype may have come through REDUCE, not the BUILD state.
        jp.Unpickler.load_build(self)
        wrapper = self.stack[-1]
        if not isinstance(wrapper, jp.NumpyArrayWrapper):  # joblib's old NDArrayWrapper is never allowed
            return
        self.stack.pop()
        if getattr(getattr(wrapper, "dtype", None), "hasobject", False):
            self.stack.append(nested(self.file_handle).load())
        elif hasattr(self, "ensure_native_byte_order"):  # what NumpyUnpickler.load_build does after building
            self.stack.append(wrapper.read(self, self.ensure_native_byte_order))
        else:  # joblib before 1.5
            self.stack.append(wrapper.read(self))

    dispatch = dict(jp.NumpyUnpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build
    return type("_Restricted", (RestrictedGlobals, jp.NumpyUnpickler), {"allow_extra": allow, "dispatch": dispatch})


def _load_onnx(model_dir: Path, manifest: ServingManifest) -> Model:
    path = resolve_inside(model_dir, manifest.model_file)
    if not path.is_file():
        raise LoadError(f"model file {manifest.model_file!r} does not exist in {model_dir}")
    try:
        ort: Any = importlib.import_module("onnxruntime")
    except ImportError:
        raise LoadError("the onnx flavor needs onnxruntime installed (it is an optional extra)") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise LoadError(f"cannot load {manifest.model_file} with onnxruntime: {exc}") from None
    input_name = session.get_inputs()[0].name
    all_int = bool(manifest.inputs) and all(c.type in ("long", "integer") for c in manifest.inputs)
    dtype = np.int64 if all_int else np.float32

    def predict(batch: npt.NDArray[Any]) -> Any:
        out = session.run(None, {input_name: np.ascontiguousarray(batch, dtype=dtype)})[0]
        if isinstance(out, np.ndarray) and out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        return out

    return Model("onnx", predict, f"onnx:{input_name}")


def _load_python(model_dir: Path, manifest: ServingManifest) -> Model:
    file_part, sep, func_name = manifest.model_file.rpartition(":")
    if not sep or not file_part.endswith(".py") or not func_name.isidentifier():
        raise LoadError(
            f'the python flavor needs model_file = "FILE.py:FUNCTION" (e.g. "predict.py:predict"), '
            f"not {manifest.model_file!r:.80}"
        )
    path = resolve_inside(model_dir, file_part)
    if not path.is_file():
        raise LoadError(f"{file_part!r} does not exist in {model_dir}")
    root = str(model_dir.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    module_name = "_modeltui_model_" + path.stem.replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {file_part!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise LoadError(f"importing {file_part} failed: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise LoadError(f"{file_part} has no function {func_name!r}")
    return Model("python", func, f"{file_part}:{func_name}", takes_params=_takes_params(func))


def _takes_params(func: Callable[..., Any]) -> bool:
    """Whether ``func`` accepts a ``params`` keyword (MLflow's rule for passing inference parameters)."""
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):  # a builtin or C function without a signature
        return False
    param = parameters.get("params")
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
