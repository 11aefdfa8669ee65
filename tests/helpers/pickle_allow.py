"""Build the pickle scan's scikit-learn allow-list (daemon/serving/pickleallow.py) from the installed scikit-learn:
every class each module *defines* (its ``__module__`` is that module: re-exports such as
``sklearn.datasets._rcv1.GzipFile`` are left out), outside the modules that read or write files or talk to other
processes (datasets, callback, tests, externals, the test helpers).

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


def render(classes: dict[str, tuple[str, ...]]) -> str:
    import sklearn

    lines = [
        "# ruff: noqa: E501",
        f'"""The scikit-learn classes a pickle may name (built from scikit-learn {sklearn.__version__} by',
        "tests/helpers/pickle_allow.py: ``.venv/bin/python -m tests.helpers.pickle_allow``; do not edit).",
        "",
        "Each module with the classes it defines; a name another module re-exports is not here.",
        '"""',
        "",
        "SKLEARN_CLASSES: dict[str, str] = {",
    ]
    for module, names in classes.items():
        lines.append(f'    "{module}": "{" ".join(names)}",')
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(build()))
    print(f"wrote {TARGET}")
