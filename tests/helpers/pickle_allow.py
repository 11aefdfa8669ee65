"""Build the pickle scan's scikit-learn allow-list (daemon/serving/pickleallow.py) from the installed scikit-learn:
every class each module *defines* (its ``__module__`` is that module: re-exports such as
``sklearn.datasets._rcv1.GzipFile`` are left out), outside the modules that read or write files or talk to other
processes (datasets, callback, tests, externals, the test helpers).

Besides classes, a fitted model's pickle names a few functions and numpy types, each allowed by name (and only
in the module that defines it):

- the univariate score functions ``sklearn.feature_selection`` exports to be passed as ``score_func``
  (``SelectKBest(score_func=f_classif)`` pickles the function): each computes statistics of the arrays it is
  given (``n_jobs`` of the mutual-information ones is keyword-only, which a pickle's REDUCE cannot pass);
- ``newObj`` of the modules defining it (KD/ball trees, distance metrics): ``newObj(cls)`` is
  ``cls.__new__(cls)``, what the NEWOBJ opcode does anyway;
- numpy's scalar types (``OneHotEncoder``'s default ``dtype=numpy.float64``) and their ``numpy.dtypes``
  classes: calling one converts its argument to a number or makes a dtype.

``.venv/bin/python -m tests.helpers.pickle_allow`` writes the module again; tests/serving/test_picklescan.py
checks that the file is what this builds now.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings
from pathlib import Path

from daemon.serving.picklescan import DENIED_MODULE_PARTS, DENIED_NAMES

_CLASS_NAME = re.compile(r"_?[A-Z][A-Za-z0-9_]*")
#: What ``sklearn.feature_selection`` exports to be passed as a selector's ``score_func``.
SCORE_FUNCTIONS = (
    "chi2", "f_classif", "f_oneway", "f_regression", "mutual_info_classif", "mutual_info_regression", "r_regression",
)  # fmt: skip
#: The module-level unpickling helper of scikit-learn's Cython trees and metrics (``return obj.__new__(obj)``).
RECONSTRUCTOR = "newObj"
#: numpy's scalar types a model may hold as a parameter (and their ``numpy.dtypes`` classes, where numpy has them).
NUMPY_SCALARS = (
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
)  # fmt: skip
TARGET = Path(__file__).resolve().parents[2] / "daemon" / "serving" / "pickleallow.py"


def build() -> dict[str, tuple[str, ...]]:
    import sklearn

    out: dict[str, tuple[str, ...]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = ["sklearn"] + [m.name for m in pkgutil.walk_packages(sklearn.__path__, "sklearn.")]
        for module_name in sorted(names):
            if any(p in DENIED_MODULE_PARTS or "test" in p for p in module_name.split(".")):
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception:  # an optional dependency missing: its classes stay refused
                continue
            found = sorted(
                name
                for name, obj in vars(module).items()
                if isinstance(obj, type)
                and getattr(obj, "__module__", None) == module_name
                and _CLASS_NAME.fullmatch(name)
                and name not in DENIED_NAMES
                and getattr(obj, "__name__", None) == name
            )
            if found:
                out[module_name] = tuple(found)
    return out


def build_functions() -> dict[str, tuple[str, ...]]:
    """The score functions and tree reconstructors, each by the module that defines it."""
    import sklearn
    import sklearn.feature_selection

    out: dict[str, set[str]] = {}
    for name in SCORE_FUNCTIONS:
        obj = getattr(sklearn.feature_selection, name, None)
        if callable(obj) and not isinstance(obj, type) and getattr(obj, "__name__", None) == name:
            out.setdefault(obj.__module__, set()).add(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for info in pkgutil.walk_packages(sklearn.__path__, "sklearn."):
            if any(p in DENIED_MODULE_PARTS or "test" in p for p in info.name.split(".")):
                continue
            try:
                module = importlib.import_module(info.name)
            except Exception:
                continue
            obj = vars(module).get(RECONSTRUCTOR)
            if callable(obj) and not isinstance(obj, type) and getattr(obj, "__module__", None) == info.name:
                out.setdefault(info.name, set()).add(RECONSTRUCTOR)
    return {m: tuple(sorted(names)) for m, names in sorted(out.items())}


def build_numpy() -> dict[str, tuple[str, ...]]:
    """numpy's scalar types under each name numpy gives them (``numpy.bool_`` pickles as ``numpy.bool`` in numpy
    2), and their ``numpy.dtypes`` classes."""
    import numpy as np

    out: dict[str, set[str]] = {}
    for alias in NUMPY_SCALARS:
        cls = getattr(np, alias)
        for name in {alias, cls.__name__}:
            if getattr(np, name, None) is cls and cls.__module__ == "numpy":
                out.setdefault("numpy", set()).add(name)
        dtype_cls = type(np.dtype(cls))
        if dtype_cls is not np.dtype and dtype_cls.__module__ == "numpy.dtypes":
            out.setdefault("numpy.dtypes", set()).add(dtype_cls.__name__)
    return {m: tuple(sorted(names)) for m, names in sorted(out.items())}


def _table(name: str, doc: str, entries: dict[str, tuple[str, ...]]) -> list[str]:
    lines = [f"#: {doc}", f"{name}: dict[str, str] = {{"]
    lines += [f'    "{module}": "{" ".join(names)}",' for module, names in entries.items()]
    return [*lines, "}"]


def render(
    classes: dict[str, tuple[str, ...]],
    functions: dict[str, tuple[str, ...]] | None = None,
    numpy_types: dict[str, tuple[str, ...]] | None = None,
) -> str:
    import numpy as np
    import sklearn

    lines = [
        "# ruff: noqa: E501",
        '"""The scikit-learn classes and functions and the numpy types a pickle may name (built from',
        f"scikit-learn {sklearn.__version__} and numpy {np.__version__} by tests/helpers/pickle_allow.py:",
        "``.venv/bin/python -m tests.helpers.pickle_allow``; do not edit).",
        "",
        "Each module with what it defines; a name another module re-exports is not here.",
        '"""',
        "",
        "SKLEARN_CLASSES: dict[str, str] = {",
    ]
    for module, names in classes.items():
        lines.append(f'    "{module}": "{" ".join(names)}",')
    lines.append("}")
    lines += _table(
        "SKLEARN_FUNCTIONS",
        "The univariate score functions (a selector's score_func) and the trees' newObj (cls.__new__(cls)).",
        build_functions() if functions is None else functions,
    )
    lines += _table(
        "NUMPY_TYPES",
        "numpy's scalar types (a parameter such as OneHotEncoder's dtype) and their numpy.dtypes classes.",
        build_numpy() if numpy_types is None else numpy_types,
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(build(), build_functions(), build_numpy()))
    print(f"wrote {TARGET}")
