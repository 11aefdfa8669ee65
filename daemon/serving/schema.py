"""Turn request payloads into validated rows in signature order, and rows into one numpy batch.

Every accepted payload becomes ``list[list[value]]``: one list per row, values in the order of the
signature's inputs, already checked and converted (``null`` → NaN for doubles, integral floats → int for
longs). Problems raise :class:`InputError` with a status (400 shape, 422 schema) and a message naming the
row (0-based) and the column.

A schema made with ``mlflow=True`` reads the way MLflow's scoring server does where that is safe: columns
the signature does not name are dropped (pandas' unnamed index column among them), numeric strings
(``"13.5"``) in number columns are converted, ``{"inputs": {col: scalar, ...}}`` is one row, and Parquet
bodies are read (when pyarrow is installed).
"""

from __future__ import annotations

import csv
import importlib
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .manifest import Column

MAX_ROWS = 10_000
_INF = math.inf
_NINF = -math.inf
_NAN = math.nan
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)
_FLOAT32_MAX = 3.4028234663852886e38
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS_KEY = "params"
Rows = list[list[Any]]
Params = dict[str, Any]


class InputError(Exception):
    """A request the runtime refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Bad(Exception):
    pass


def _show(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"string {v[:40]!r}" + ("…" if len(v) > 40 else "")
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        text = str(v) if abs(v) < 10**40 else "a huge integer"
        return text
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _name(n: str) -> str:
    return repr(n[:60])


def _double(v: Any) -> float:
    t = type(v)
    if t is float:
        if v in (_INF, _NINF):
            raise _Bad("infinity is not accepted (NaN or null mean missing)")
        return float(v)
    if t is int:
        try:
            return float(v)
        except OverflowError:
            raise _Bad("the number is out of range for a double") from None
    if v is None:
        return _NAN
    raise _Bad(f"expected a number, got {_show(v)}")


def _float32(v: Any) -> float:
    f = _double(v)
    if abs(f) > _FLOAT32_MAX:
        raise _Bad("the number is out of range for a float")
    return f


def _int_in(bounds: tuple[int, int], kind: str) -> Callable[[Any], int]:
    lo, hi = bounds

    def check(v: Any) -> int:
        t = type(v)
        if t is float:
            if v != v:
                raise _Bad(f"NaN is not a valid {kind}")
            if v in (_INF, _NINF) or not v.is_integer():
                raise _Bad(f"expected an integer ({kind}), got {_show(v)}")
            v = int(v)
        elif t is not int:
            raise _Bad(f"expected an integer ({kind}), got {_show(v)}")
        if v < lo or v > hi:
            raise _Bad(f"{_show(v)} is out of range for {kind}")
        return int(v)

    return check


def _boolean(v: Any) -> bool:
    if type(v) is bool:
        return bool(v)
    raise _Bad(f"expected true or false, got {_show(v)}")


def _string(v: Any) -> str:
    if type(v) is str:
        return str(v)
    raise _Bad(f"expected a string, got {_show(v)}")


def _any_scalar(v: Any) -> Any:
    if v is None or type(v) in (bool, int, float, str):
        return v
    raise _Bad(f"expected a scalar, got {_show(v)}")


_CHECKERS: dict[str, Callable[[Any], Any]] = {
    "double": _double,
    "float": _float32,
    "long": _int_in(_INT64, "long"),
    "integer": _int_in(_INT32, "integer"),
    "boolean": _boolean,
    "string": _string,
}
_NUMBER_TYPES = ("double", "float", "long", "integer")


def _numeric_strings(ctype: str) -> Callable[[Any], Any]:
    """The checker of a number column that also takes a number written as a string, as MLflow does."""
    check = _CHECKERS[ctype]

    def convert(v: Any) -> Any:
        if type(v) is str:
            if not v.strip():
                raise _Bad(f"expected a number, got {_show(v)}")
            return _csv_value(ctype, v)
        return check(v)

    return convert


def _csv_value(ctype: str, text: str) -> Any:
    s = text.strip()
    if ctype in ("double", "float"):
        if not s:
            return _NAN
        try:
            f = float(s)
        except ValueError:
            raise _Bad(f"expected a number, got {_show(text)}") from None
        return _CHECKERS[ctype](f)
    if ctype in ("long", "integer"):
        try:
            n: Any = int(s)
        except ValueError:
            try:
                n = float(s)
            except ValueError:
                raise _Bad(f"expected an integer ({ctype}), got {_show(text)}") from None
        return _CHECKERS[ctype](n)
    if ctype == "boolean":
        low = s.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise _Bad(f"expected true or false, got {_show(text)}")
    return text


class Schema:
    """The input signature, with the checks and the batch dtype it implies."""

    def __init__(self, inputs: Sequence[Column], max_rows: int = MAX_ROWS, *, mlflow: bool = False) -> None:
        self.names = [c.name for c in inputs]
        self.types = [c.type for c in inputs]
        self.width = len(self.names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.max_rows = max_rows
        self.drop_extra = mlflow
        """Columns the signature does not name are dropped (MLflow's rule), not refused."""
        if mlflow:
            self._checks = [_numeric_strings(t) if t in _NUMBER_TYPES else _CHECKERS[t] for t in self.types]
        else:
            self._checks = [_CHECKERS[t] for t in self.types]
        kinds = set(self.types)
        self._all_double = bool(kinds) and kinds <= {"double"}
        self.dtype: npt.DTypeLike | None
        if not kinds:
            self.dtype = None  # decided per batch
        elif kinds <= {"double", "float", "long", "integer"}:
            self.dtype = np.int64 if kinds <= {"long", "integer"} else np.float64
        elif kinds == {"boolean"}:
            self.dtype = np.bool_
        else:
            self.dtype = object

    # ---- rows -------------------------------------------------------------------------------------

    def _count(self, n: int) -> None:
        if n == 0:
            raise InputError(422, "no rows: send at least one row")
        if n > self.max_rows:
            raise InputError(422, f"{n} rows in one request; the limit is {self.max_rows}")

    def _bad(self, i: int, j: int, exc: _Bad) -> InputError:
        if self.width:
            return InputError(422, f"row {i}, column {_name(self.names[j])}: {exc}")
        return InputError(422, f"row {i}, position {j}: {exc}")

    def _check_row(self, i: int, row: list[Any]) -> list[Any]:
        """Validate one positional row (a fresh list the caller owns) and return it converted."""
        checks: list[Callable[[Any], Any]]
        if self._all_double:
            # Fast path: all floats and none infinite (C-level scans).
            if all(type(v) is float for v in row) and _INF not in row and _NINF not in row:
                return row
            checks = self._checks
        elif self.width:
            checks = self._checks
        else:
            checks = [_any_scalar] * len(row)
        j = 0
        try:
            for j, check in enumerate(checks):
                row[j] = check(row[j])
        except _Bad as exc:
            raise self._bad(i, j, exc) from None
        return row

    def from_lists(self, rows: list[Any]) -> Rows:
        self._count(len(rows))
        if type(rows[0]) is dict:
            return self.from_records(rows)
        width = self.width or (len(rows[0]) if type(rows[0]) is list else -1)
        out: Rows = []
        for i, row in enumerate(rows):
            if type(row) is not list:
                if self.width == 1 and type(row) is not dict:
                    row = [row]
                else:
                    raise InputError(400, f"row {i}: expected a list of {self.width or 'the'} values, got {_show(row)}")
            if len(row) != width:
                raise InputError(
                    422 if self.width else 400,
                    f"row {i} has {len(row)} values; expected {width}"
                    + (f" ({', '.join(map(_name, self.names[:5]))}{', …' if width > 5 else ''})" if self.width else ""),
                )
            out.append(self._check_row(i, list(row)))
        return out

    def _no_names(self) -> InputError:
        return InputError(422, "the model has no input signature, so rows must be lists of values, not objects")

    def _names_ok(self, keys: Any) -> bool:
        """Whether ``keys`` (the columns a request names) fit the signature: exactly its names, or, for a
        schema that drops extra columns, a superset of them."""
        if len(keys) == self.width:
            return all(n in keys for n in self.names)
        return self.drop_extra and len(keys) > self.width and all(n in keys for n in self.names)

    def _missing_extra(self, where: str, keys: Any) -> InputError:
        missing = [n for n in self.names if n not in keys]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            return InputError(422, f"{where}: missing column {_name(missing[0])}{more}")
        extra = [str(k) for k in keys if k not in self.index]
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        return InputError(422, f"{where}: unexpected column {_name(extra[0]) if extra else '?'}{more}")

    def from_records(self, records: list[Any]) -> Rows:
        self._count(len(records))
        if not self.width:
            raise self._no_names()
        names, width = self.names, self.width
        out: Rows = []
        for i, rec in enumerate(records):
            if type(rec) is not dict:
                raise InputError(400, f"row {i}: expected an object of column: value, got {_show(rec)}")
            if len(rec) != width and not (self.drop_extra and len(rec) > width):
                raise self._missing_extra(f"row {i}", rec)
            try:
                row = [rec[n] for n in names]
            except KeyError:
                raise self._missing_extra(f"row {i}", rec) from None
            out.append(self._check_row(i, row))
        return out

    def from_columns(self, cols: dict[str, Any], where: str = "inputs") -> Rows:
        if not self.width:
            raise self._no_names()
        if not self._names_ok(cols):
            raise self._missing_extra(where, cols)
        lists = [cols[n] for n in self.names]
        if self.drop_extra and not any(type(v) in (list, dict) for v in lists):
            return [self._check_row(0, lists)]  # MLflow reads {column: scalar, ...} as one row
        n = -1
        for name, values in zip(self.names, lists, strict=True):
            if type(values) is not list:
                raise InputError(400, f"column {_name(name)}: expected a list of values, got {_show(values)}")
            if n < 0:
                n = len(values)
            elif len(values) != n:
                raise InputError(422, f"column {_name(name)} has {len(values)} values; the first column has {n}")
        self._count(n)
        return [self._check_row(i, list(row)) for i, row in enumerate(zip(*lists, strict=True))]

    def _order(self, where: str, columns: list[str]) -> list[int]:
        """Where each signature column is among ``columns`` (a header): refused when one is missing or named
        twice, or when another column is there and this schema does not drop extras."""
        named = [c for c in columns if c in self.index]
        if len(set(named)) != len(named):
            raise InputError(422, f"{where}: a column is named twice")
        if len(named) != self.width or (len(columns) != self.width and not self.drop_extra):
            raise self._missing_extra(where, columns)
        return [columns.index(n) for n in self.names]

    def from_split(self, split: Any) -> Rows:
        if type(split) is not dict:
            raise InputError(400, "dataframe_split must be an object with columns and data")
        extra = set(split) - {"columns", "data", "index"}
        if extra:
            raise InputError(400, f"dataframe_split: unexpected key {_name(sorted(extra)[0])}")
        data = split.get("data")
        if type(data) is not list:
            raise InputError(400, "dataframe_split.data must be a list of rows")
        columns = split.get("columns")
        if columns is None:
            return self.from_lists(data)
        if type(columns) is not list or not all(type(c) is str for c in columns):
            raise InputError(400, "dataframe_split.columns must be a list of column names")
        if not self.width:
            raise self._no_names()
        if columns == self.names:
            return self.from_lists(data)
        order = self._order("dataframe_split.columns", columns)
        self._count(len(data))
        out: Rows = []
        for i, row in enumerate(data):
            if type(row) is not list:
                raise InputError(400, f"dataframe_split.data row {i}: expected a list, got {_show(row)}")
            if len(row) != len(columns):
                raise InputError(422, f"dataframe_split.data row {i} has {len(row)} values; expected {len(columns)}")
            out.append(self._check_row(i, [row[k] for k in order]))
        return out

    def from_csv(self, body: bytes) -> Rows:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(400, "the CSV body is not UTF-8") from None
        try:
            records = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise InputError(400, f"malformed CSV: {exc}") from None
        records = [r for r in records if r]
        if not records:
            raise InputError(400, "the CSV body is empty: send a header row and at least one row")
        header, data = records[0], records[1:]
        header = [h.strip() for h in header]
        if not self.width:
            raise self._no_names()
        order = self._order("CSV header", header)
        self._count(len(data))
        types = self.types
        out: Rows = []
        for i, rec in enumerate(data):
            if len(rec) != len(header):
                raise InputError(422, f"CSV row {i} has {len(rec)} values; the header has {len(header)}")
            row: list[Any] = []
            j = 0
            try:
                for j, k in enumerate(order):
                    row.append(_csv_value(types[j], rec[k]))
            except _Bad as exc:
                raise self._bad(i, j, exc) from None
            out.append(row)
        return out

    def from_parquet(self, body: bytes) -> Rows:
        """A Parquet file (pandas' ``df.to_parquet()``), read with pyarrow when the environment has it."""
        try:
            pa: Any = importlib.import_module("pyarrow")
            pq: Any = importlib.import_module("pyarrow.parquet")
        except ImportError:
            raise InputError(
                415,
                "Parquet input needs pyarrow, which this runtime's Python environment does not have: "
                "send application/json or text/csv, or add pyarrow to the model's requirements",
            ) from None
        try:
            columns = pq.read_table(pa.BufferReader(body)).to_pydict()
        except Exception as exc:  # pyarrow's errors have no common base worth naming
            raise InputError(400, f"malformed Parquet: {str(exc)[:200]}") from None
        return self.from_columns(columns, "the Parquet columns")

    # ---- payloads ----------------------------------------------------------------------------------

    def from_inputs(self, value: Any, where: str = "inputs") -> Rows:
        if type(value) is list:
            if not value:
                self._count(0)
            return self.from_lists(value)
        if type(value) is dict:
            return self.from_columns(value)
        raise InputError(400, f"{where} must be a list of rows or an object of columns, got {_show(value)}")

    @staticmethod
    def take_params(obj: Any) -> Params | None:
        """Remove and return the ``params`` beside the data (MLflow's inference parameters): an object,
        or null for none."""
        if type(obj) is not dict or PARAMS_KEY not in obj:
            return None
        params = obj.pop(PARAMS_KEY)
        if params is None:
            return None
        if type(params) is not dict:
            raise InputError(400, f"params must be an object of name: value, got {_show(params)}")
        return params

    def from_predict(self, obj: Any) -> Rows:
        if type(obj) is not dict or "inputs" not in obj:
            raise InputError(400, 'expected a JSON object {"inputs": [...]}')
        if len(obj) != 1:
            extra = sorted(k for k in obj if k != "inputs")
            raise InputError(400, f'unexpected key {_name(extra[0])}: the body is {{"inputs": [...]}}')
        return self.from_inputs(obj["inputs"])

    def from_mlflow(self, obj: Any) -> Rows:
        if type(obj) is not dict:
            raise InputError(400, f"expected a JSON object with one of: {', '.join(MLFLOW_FORMATS)}")
        keys = [k for k in MLFLOW_FORMATS if k in obj]
        if len(keys) != 1:
            what = "none" if not keys else " and ".join(keys)
            raise InputError(400, f"expected exactly one of {', '.join(MLFLOW_FORMATS)}; got {what}")
        if len(obj) != 1:
            extra = sorted(k for k in obj if k != keys[0])
            raise InputError(400, f"unexpected key {_name(extra[0])} next to {keys[0]}")
        key = keys[0]
        value = obj[key]
        if key == "dataframe_split":
            return self.from_split(value)
        if key == "dataframe_records":
            if type(value) is not list:
                raise InputError(400, "dataframe_records must be a list of objects")
            if not value:
                self._count(0)
            return self.from_records(value)
        if key == "instances" and type(value) is not list:
            raise InputError(400, "instances must be a list")
        return self.from_inputs(value, key)

    # ---- batch ------------------------------------------------------------------------------------

    def to_array(self, rows: Rows) -> npt.NDArray[Any]:
        """One 2-D array for a whole batch."""
        dtype = self.dtype
        if dtype is None:
            numeric = all(type(v) in (int, float) for row in rows for v in row)
            dtype = np.float64 if numeric else object
        if dtype is object:
            arr = np.empty((len(rows), len(rows[0]) if rows else 0), dtype=object)
            for i, row in enumerate(rows):
                arr[i, :] = row
            return arr
        return np.array(rows, dtype=dtype)
