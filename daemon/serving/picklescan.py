"""Scan pickle and joblib files without loading them: which globals would unpickling import, and are they all
in the allow-list?

Unpickling imports whatever a ``GLOBAL``/``STACK_GLOBAL``/``INST`` opcode names and may call it (``REDUCE``,
``NEWOBJ``, ``BUILD``), so a pickle is exactly as safe as the globals it names. This module walks the opcodes
with :func:`pickletools.genops` and a small symbolic stack (strings and containers only: nothing is imported,
constructed or called) and collects every global. A global outside :func:`allowed` is refused: like skops'
trusted types, the list holds the numpy, scikit-learn, SciPy-sparse, XGBoost and LightGBM classes, numpy's scalar
types and the few functions their pickles use (scikit-learn's univariate score functions among them), and plain
builtins such as ``set`` or ``slice`` — never ``os``, ``subprocess``,
``builtins.eval``/``exec``/``getattr``/``__import__``, or dotted attribute paths (``module`` + ``"os.system"``).

joblib files are a pickle stream with each numpy array's raw bytes written right after its
``NumpyArrayWrapper`` (optionally the whole file compressed): the scan follows the wrapper's shape and dtype to
step over those bytes, and scans the nested pickle stream of an object array like any other.

Standard library and numpy only (numpy only for a dtype's item size): the runtime scans before it unpickles,
and the daemon imports this module to scan at push time.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import importlib
import lzma
import pickle
import pickletools
import re
import zlib
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .pickleallow import NUMPY_TYPES, SKLEARN_CLASSES, SKLEARN_FUNCTIONS

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
#: Globals outside the allow-list that the daemon lets the runtime load (comma-separated): it sets them only for a
#: version whose refused globals the run-code policy allowed (docs/security.md).
PICKLE_ALLOW_ENV = "MODELTUI_PICKLE_ALLOW"
#: Most distinct globals one file may name (a real scikit-learn pipeline names a few dozen).
MAX_GLOBALS = 10_000
#: Most refused globals kept in a result (the count is exact; the list is for messages).
MAX_REFUSED_SHOWN = 50

_BUILTINS = {"builtins"}
_SAFE_BUILTINS = {
    "set", "frozenset", "slice", "complex", "bytearray", "bytes", "range", "int", "float", "str", "list",
    "tuple", "dict", "bool", "object",
}  # fmt: skip
_EXACT = {
    "copyreg._reconstructor", "_codecs.encode",
    "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "numpy.dtype", "numpy.ndarray",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
    "numpy.ma.core._mareconstruct", "numpy.ma.core.MaskedArray",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence", "numpy.random._mt19937.MT19937",
    "numpy.random._pcg64.PCG64", "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox",
    "numpy.random._sfc64.SFC64", "numpy.random.mtrand.RandomState", "numpy.random._generator.Generator",
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "scipy.sparse._csr.csr_matrix", "scipy.sparse._csc.csc_matrix", "scipy.sparse._coo.coo_matrix",
    "scipy.sparse._csr.csr_array", "scipy.sparse._csc.csc_array", "scipy.sparse._coo.coo_array",
    "scipy.sparse.csr.csr_matrix", "scipy.sparse.csc.csc_matrix", "scipy.sparse.coo.coo_matrix",
    "xgboost.core.Booster", "lightgbm.basic.Booster",
}  # fmt: skip
#: The scikit-learn classes, score functions and tree reconstructors and numpy's scalar types, by the module that
#: defines each (generated from the installed scikit-learn and numpy), and the XGBoost and LightGBM estimators: a
#: name is allowed only in the module that defines it, never in one that merely imports it
#: (``sklearn.datasets._rcv1.GzipFile`` is gzip's, and opens files).
_CLASSES: dict[str, frozenset[str]] = {}
for _table in (SKLEARN_CLASSES, SKLEARN_FUNCTIONS, NUMPY_TYPES):
    for _module, _names in _table.items():
        _CLASSES[_module] = _CLASSES.get(_module, frozenset()) | frozenset(_names.split())
_CLASSES["xgboost.sklearn"] = frozenset(
    {"XGBModel", "XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor"}
)
_CLASSES["lightgbm.sklearn"] = frozenset({"LGBMModel", "LGBMClassifier", "LGBMRegressor", "LGBMRanker"})
#: Never allowed, whatever module defines them (also used to build the list).
DENIED_NAMES = frozenset({"Popen", "Pickler", "Unpickler", "Parallel", "Memory", "TempMemmap", "FortranFile", "Thread"})
#: Module name parts whose classes are never allowed: they read or write files, or talk to other processes.
DENIED_MODULE_PARTS = frozenset(
    {
        "datasets",
        "callback",
        "externals",
        "_testing",
        "_mocking",
        "conftest",
        "_build_utils",
        "__check_build",
        "estimator_checks",
    }
)
#: Where a few allowed globals really live (the object's ``__module__``) when a pickle names an older path.
_MODULE_ALIASES = {
    "numpy.core.multiarray": "numpy._core.multiarray",
    "numpy.core.numeric": "numpy._core.numeric",
    "numpy.ma.core": "numpy.ma",
    "scipy.sparse.csr": "scipy.sparse._csr",
    "scipy.sparse.csc": "scipy.sparse._csc",
    "scipy.sparse.coo": "scipy.sparse._coo",
}
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def modern_name(module: str, name: str) -> tuple[str, str]:
    """What an unpickler imports when a protocol 0-2 pickle names ``module.name``: it maps Python 2's names
    (``__builtin__.set`` is ``builtins.set``, ``copy_reg`` is ``copyreg``) as ``fix_imports`` does."""
    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


def allowed(module: str, name: str, extra: Iterable[str] = ()) -> bool:
    """Whether unpickling may import ``module.name`` (today's names: see :func:`modern_name`); ``extra`` names
    more (exactly, as the pickle names them) that someone allowed."""
    full = f"{module}.{name}"
    if full in extra:
        return True
    if not _MODULE.fullmatch(module) or not name.isidentifier():  # "os.system" as a name walks attributes
        return False
    if module in _BUILTINS:
        return name in _SAFE_BUILTINS
    if full in _EXACT:
        return True
    parts = module.split(".")
    if any("test" in p or p in DENIED_MODULE_PARTS for p in parts) or name in DENIED_NAMES:
        return False
    return name in _CLASSES.get(module, ())


def defined_where_named(obj: Any, module: str) -> bool:
    """Whether ``obj``, found as ``module.name``, is defined there (its ``__module__``), not re-exported from
    elsewhere: what the runtime checks of every global it loads."""
    actual = getattr(obj, "__module__", None)
    return actual == module or (actual is not None and _MODULE_ALIASES.get(module) == actual)


class RestrictedGlobals:
    """A ``find_class`` for an unpickler: only what :func:`allowed` admits (and ``extra``), and only an object
    defined in the module the pickle names. Mix it in before :class:`pickle.Unpickler` (or joblib's).

    A protocol 0-2 pickle's Python 2 names are mapped by the unpickler (:func:`modern_name`); the C unpickler
    does not say which protocol it read, so an old name passes when its modern name is allowed and the object
    found is that very object."""

    allow_extra: frozenset[str] = frozenset()

    def find_class(self, module: str, name: str) -> Any:
        full, modern = f"{module}.{name}", modern_name(module, name)
        mapped = modern != (module, name) and allowed(*modern)
        if not allowed(module, name, self.allow_extra) and not mapped:
            raise pickle.UnpicklingError(f"global {full} is not allowed")
        obj = super().find_class(module, name)  # type: ignore[misc]
        if full in self.allow_extra or (allowed(module, name) and defined_where_named(obj, module)):
            return obj
        if mapped and obj is getattr(importlib.import_module(modern[0]), modern[1], None):
            return obj
        raise pickle.UnpicklingError(f"global {full} is defined in {getattr(obj, '__module__', None)}, not {module}")


@dataclass(frozen=True)
class ScanResult:
    """What a file's pickle stream(s) would import. ``error``: the file could not be read as a pickle (then
    nothing in it may be loaded either)."""

    file: str
    globals: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    refused_count: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.refused_count

    def summary(self) -> str:
        """One line for ``show``: ``ok (23 globals, all allowed)`` or ``refused: os.system in model.pkl``."""
        if self.error is not None:
            return f"refused: {self.file} is not a readable pickle ({self.error})"
        if self.refused_count:
            more = f" (and {self.refused_count - 3} more)" if self.refused_count > 3 else ""
            return f"refused: {', '.join(self.refused[:3])}{more} in {self.file}"
        return f"ok ({len(self.globals)} globals, all allowed)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "globals": list(self.globals),
            "refused": list(self.refused),
            "refused_count": self.refused_count,
            "error": self.error,
        }


class _Unreadable(Exception):
    pass


@dataclass
class _Global:
    name: str


@dataclass
class _Obj:
    """The symbolic result of calling or instantiating ``func`` (nothing is called)."""

    func: Any
    args: Any = None
    state: Any = None


class _Mark:
    pass


_MARK = _Mark()
_OPAQUE = object()


@dataclass
class _Scan:
    found: set[str] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)
    refused_count: int = 0


def is_pickle_name(path: str) -> bool:
    return path.lower().endswith(PICKLE_SUFFIXES)


def scan_file(path: Path, name: str | None = None, extra: Iterable[str] = ()) -> ScanResult:
    """Scan the pickle (or joblib) file at ``path``; ``name`` is how results name it (default: its name)."""
    shown = name or path.name
    try:
        with path.open("rb") as raw:
            return scan_stream(raw, shown, extra)
    except OSError as exc:
        return ScanResult(shown, error=f"cannot read: {exc.strerror or exc}")


def scan_bytes(data: bytes, name: str, extra: Iterable[str] = ()) -> ScanResult:
    import io

    return scan_stream(io.BytesIO(data), name, extra)


def scan_stream(raw: IO[bytes], name: str, extra: Iterable[str] = ()) -> ScanResult:
    """Scan the stream from its current position: every pickle stream in it (joblib writes array bytes, and
    whole nested pickles, between the opcodes), after undoing joblib's compression."""
    extra = frozenset(extra)
    state = _Scan()
    try:
        fh = _decompressed(raw)
        _scan_one(fh, state, extra)
    except _Unreadable as exc:
        return ScanResult(name, error=str(exc)[:200])
    except (ValueError, EOFError, OSError, zlib.error, lzma.LZMAError, MemoryError) as exc:
        return ScanResult(name, error=f"{type(exc).__name__}: {exc}"[:200])
    return ScanResult(name, tuple(sorted(state.found)), tuple(state.refused), state.refused_count)


class _ZlibReader:
    """A forward-only reader of a zlib stream (joblib's ``compress=N`` default)."""

    def __init__(self, raw: IO[bytes], head: bytes) -> None:
        self.raw = raw
        self.inflate = zlib.decompressobj()
        self.buffer = self.inflate.decompress(head)

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buffer) < n) and not self.inflate.eof:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                break
            self.buffer += self.inflate.decompress(chunk)
        if n < 0:
            n = len(self.buffer)
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def readline(self) -> bytes:
        parts = []
        while True:
            c = self.read(1)
            parts.append(c)
            if not c or c == b"\n":
                return b"".join(parts)


def _decompressed(raw: IO[bytes]) -> Any:
    start = raw.tell()
    head = raw.read(6)
    raw.seek(start)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if head.startswith(b"\xfd7zXZ") or head.startswith(b"\x5d\x00\x00"):
        return lzma.LZMAFile(raw)
    if head[:1] == b"x" and len(head) > 1 and (head[0] * 256 + head[1]) % 31 == 0:
        return _ZlibReader(raw, b"")
    if head.startswith(b"\x04\x22\x4d\x18"):
        raise _Unreadable("compressed with lz4, which the scan cannot read: save it uncompressed or with zlib")
    if head.startswith(b"ZF"):
        raise _Unreadable("an old joblib format (before joblib 0.10): save it again")
    return raw


def _skip(fh: Any, n: int) -> None:
    while n > 0:
        got = fh.read(min(n, 1 << 20))
        if not got:
            raise _Unreadable("the file ends inside a numpy array's data")
        n -= len(got)


def _pop_mark(stack: list[Any]) -> list[Any]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1 :]
            del stack[i:]
            return items
    raise _Unreadable("a MARK is missing")


def _record(module: Any, name: Any, state: _Scan, extra: frozenset[str], proto: int) -> _Global:
    if not isinstance(module, str) or not isinstance(name, str):
        full = "(a global the scan cannot name)"
        ok = False
    else:
        full = f"{module}.{name}"
        # a protocol 0-2 stream's names are mapped by the unpickler (fix_imports): judge what it imports
        ok = full in extra or allowed(*(modern_name(module, name) if proto < 3 else (module, name)))
    if full not in state.found:
        if len(state.found) >= MAX_GLOBALS:
            raise _Unreadable(f"it names more than {MAX_GLOBALS} globals")
        state.found.add(full)
        if not ok:
            state.refused_count += 1
            if len(state.refused) < MAX_REFUSED_SHOWN:
                state.refused.append(full)
    return _Global(full)


_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
_CONSTANTS = _STRINGS | {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
}  # fmt: skip
_WRAPPERS = {"joblib.numpy_pickle.NumpyArrayWrapper"}


def _scan_one(fh: Any, state: _Scan, extra: frozenset[str]) -> None:
    """One pickle stream, up to its STOP; the stream position is then just after it."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    proto = 0  # a stream without PROTO is protocol 0 or 1

    def pop() -> Any:
        if not stack or stack[-1] is _MARK:
            raise _Unreadable("the opcodes pop an empty stack")
        return stack.pop()

    for op, arg, _pos in pickletools.genops(fh):
        n = op.name
        if n in _CONSTANTS:
            stack.append(arg)
        elif n in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[n])
        elif n == "PROTO":
            proto = int(str(arg))
        elif n == "FRAME":
            pass
        elif n == "STOP":
            return
        elif n == "MARK":
            stack.append(_MARK)
        elif n in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
            stack.append({"EMPTY_LIST": [], "EMPTY_DICT": {}, "EMPTY_SET": []}[n])
        elif n == "EMPTY_TUPLE":
            stack.append(())
        elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
            k = int(n[-1])
            items = [pop() for _ in range(k)][::-1]
            stack.append(tuple(items))
        elif n in ("TUPLE", "LIST", "FROZENSET"):
            items = _pop_mark(stack)
            stack.append(tuple(items) if n == "TUPLE" else items)
        elif n == "DICT":
            items = _pop_mark(stack)
            stack.append(_dict(items))
        elif n in ("APPEND", "APPENDS", "ADDITEMS"):
            items = [pop()] if n == "APPEND" else _pop_mark(stack)
            target = pop()
            if isinstance(target, list):
                target.extend(items)
            stack.append(target)
        elif n in ("SETITEM", "SETITEMS"):
            items = [pop(), pop()][::-1] if n == "SETITEM" else _pop_mark(stack)
            target = pop()
            if isinstance(target, dict):
                target.update(_dict(items))
            stack.append(target)
        elif n == "POP":
            stack.pop() if stack else None
        elif n == "POP_MARK":
            _pop_mark(stack)
        elif n == "DUP":
            stack.append(stack[-1] if stack else _OPAQUE)
        elif n in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(str(arg))] = stack[-1] if stack else _OPAQUE
        elif n == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else _OPAQUE
        elif n in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(str(arg)), _OPAQUE))
        elif n in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            g = _record(module, name, state, extra, proto)
            stack.append(_Obj(g, tuple(_pop_mark(stack))) if n == "INST" else g)
        elif n == "STACK_GLOBAL":
            name = pop()
            module = pop()
            stack.append(_record(module, name, state, extra, proto))
        elif n == "OBJ":
            items = _pop_mark(stack)
            stack.append(_Obj(items[0] if items else _OPAQUE, tuple(items[1:])))
        elif n in ("REDUCE", "NEWOBJ"):
            args = pop()
            stack.append(_Obj(pop(), args))
        elif n == "NEWOBJ_EX":
            pop()
            args = pop()
            stack.append(_Obj(pop(), args))
        elif n == "BUILD":
            built = pop()
            target = stack[-1] if stack else None
            if isinstance(target, _Obj):
                target.state = built
                if _is_wrapper(target):
                    _after_wrapper(fh, target, state, extra)
        elif n in ("NEXT_BUFFER", "READONLY_BUFFER"):
            stack.append(_OPAQUE)
        elif n in ("PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4"):
            # Persistent ids and the copyreg extension registry name objects the scan cannot see.
            raise _Unreadable(f"it uses the {n} opcode, which names objects the scan cannot check")
        else:
            raise _Unreadable(f"unexpected opcode {n}")
    raise _Unreadable("the pickle stream has no STOP")


def _is_wrapper(obj: _Obj) -> bool:
    """A joblib array wrapper: made by NEWOBJ/REDUCE on its class, or (protocols 0 and 1) by
    ``copyreg._reconstructor(NumpyArrayWrapper, object, None)``."""
    func = obj.func
    if isinstance(func, _Global) and func.name in ("copyreg._reconstructor", "copy_reg._reconstructor"):
        func = obj.args[0] if isinstance(obj.args, tuple) and obj.args else None
    return isinstance(func, _Global) and func.name in _WRAPPERS


def _dict(items: list[Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in zip(items[::2], items[1::2], strict=False):
        with contextlib.suppress(TypeError):  # an unhashable symbolic key: irrelevant to the scan
            out[key] = value
    return out


def _after_wrapper(fh: Any, wrapper: _Obj, state: _Scan, extra: frozenset[str]) -> None:
    """joblib wrote the array's data right after this BUILD: step over it (or scan its nested pickle)."""
    st = wrapper.state
    if not isinstance(st, dict):
        raise _Unreadable("a joblib array wrapper without its state")
    shape, dtype = st.get("shape"), st.get("dtype")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _Unreadable("a joblib array wrapper with an unreadable shape")
    itemsize, hasobject = _dtype_size(dtype)
    if hasobject:
        _scan_one(fh, state, extra)  # a whole pickle stream of the object array
        return
    if st.get("numpy_array_alignment_bytes") is not None:
        pad = fh.read(1)
        if len(pad) != 1:
            raise _Unreadable("the file ends inside a numpy array's padding")
        _skip(fh, pad[0])
    count = 1
    for d in shape:
        count *= d
    _skip(fh, count * itemsize)


def _dtype_size(dtype: Any) -> tuple[int, bool]:
    """(item size, holds objects) of a symbolic ``numpy.dtype(str, ...)`` with its pickled state."""
    import numpy as np

    if not isinstance(dtype, _Obj) or not isinstance(dtype.func, _Global) or dtype.func.name != "numpy.dtype":
        raise _Unreadable("a joblib array wrapper without a numpy dtype")
    args = dtype.args
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str):
        raise _Unreadable("a joblib array wrapper with an unreadable dtype")
    st = dtype.state
    elsize = st[5] if isinstance(st, tuple) and len(st) > 5 and isinstance(st[5], int) else -1
    flags = st[7] if isinstance(st, tuple) and len(st) > 7 and isinstance(st[7], int) else 0
    if args[0].startswith("O") or flags & 1:
        return 0, True
    try:
        size = np.dtype(args[0]).itemsize
    except TypeError:
        raise _Unreadable(f"unknown dtype {args[0]!r:.40}") from None
    return (elsize if elsize > 0 else size), False


__all__ = [
    "DENIED_MODULE_PARTS",
    "DENIED_NAMES",
    "PICKLE_ALLOW_ENV",
    "PICKLE_SUFFIXES",
    "RestrictedGlobals",
    "ScanResult",
    "allowed",
    "defined_where_named",
    "is_pickle_name",
    "modern_name",
    "scan_bytes",
    "scan_file",
    "scan_stream",
]
