"""``modeltui.toml``: the manifest that describes a model directory.

The client validates it before pushing (early, readable errors) and the daemon validates it again from the
bytes it stored (a peer is never trusted). Only TOML parsing happens in the daemon: model files are never
loaded there.
"""

from __future__ import annotations

import tomllib
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .alerts import AlertSpec
from .names import ModelName, RelPath, TagKey, Text, check_rel_path, check_text

MANIFEST_FILE = "modeltui.toml"
MAX_MANIFEST_BYTES = 256 * 1024
#: Deepest nesting of tables and arrays a manifest may use (real ones use 4 or 5): deeper input would
#: exhaust the parser's recursion, in the client and in the daemon alike.
MAX_NESTING = 32

Flavor = Literal["sklearn", "onnx", "python"]
ColumnType = Literal["double", "float", "long", "integer", "boolean", "string"]
#: A dotted Python type name, as skops reports untrusted types (e.g. "sklearn.tree._tree.Tree").
TrustedType = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$", max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _line(what: str, limit: int = 256) -> AfterValidator:
    """One line of printable text: these strings reach terminals (``diff``, ``show``) and HTTP errors."""
    return AfterValidator(lambda value: check_text(value, limit=limit, what=what, multiline=False))


ColumnName = Annotated[str, Field(min_length=1), _line("column name")]
Requirement = Annotated[str, Field(min_length=1), _line("requirement")]
ParamValue = bool | int | float | Annotated[str, _line("parameter value", 4096)]


class ColumnSpec(_Strict):
    name: ColumnName
    type: ColumnType = "double"


class Signature(_Strict):
    inputs: list[ColumnSpec] = Field(default_factory=list, max_length=10_000)
    outputs: list[ColumnSpec] = Field(default_factory=list, max_length=1_000)

    @model_validator(mode="after")
    def _unique_names(self) -> Signature:
        for where, columns in (("inputs", self.inputs), ("outputs", self.outputs)):
            seen: set[str] = set()
            for c in columns:
                if c.name in seen:
                    raise ValueError(f"{where}: column {c.name[:60]!r} appears twice")
                seen.add(c.name)
        return self


class Evaluation(_Strict):
    data: RelPath
    target: ColumnName


class Training(_Strict):
    command: Annotated[str, Field(min_length=1), AfterValidator(lambda v: check_text(v, what="command"))]


class Manifest(_Strict):
    """The validated content of ``modeltui.toml``."""

    name: ModelName
    flavor: Flavor
    model_file: RelPath
    trusted: bool | Annotated[list[TrustedType], Field(max_length=100)] = False
    """true trusts the model file entirely (required for pickles); a list names the only extra types skops
    may load from it (a reviewed allowlist)."""
    description: Text = ""
    requirements: list[Requirement] = Field(default_factory=list, max_length=500)
    signature: Signature = Field(default_factory=Signature)
    params: dict[TagKey, ParamValue] = Field(default_factory=dict, max_length=1_000)
    metrics: dict[TagKey, float] = Field(default_factory=dict, max_length=1_000)
    evaluation: Evaluation | None = None
    training: Training | None = None
    maintenance: dict[str, Any] | None = None
    alerts: list[AlertSpec] | None = Field(default=None, max_length=100)
    """Default alert rules of deployments of this version (``[[alerts]]`` tables: rule, severity, name,
    window); a deployment's own rules replace them (docs/monitoring.md, "Alerts")."""

    @field_validator("model_file", mode="before")
    @classmethod
    def _file_part_is_a_path(cls, value: Any) -> Any:
        # python flavor: "predict.py:predict" (FILE:FUNCTION); the FILE part must be a safe relative path.
        if isinstance(value, str) and ":" in value:
            path, _, function = value.partition(":")
            check_rel_path(path)
            if not function.isidentifier():
                raise ValueError(f"model_file {value[:80]!r}: after ':' comes a Python function name")
        return value

    @model_validator(mode="after")
    def _unique_alert_names(self) -> Manifest:
        seen: set[str] = set()
        for spec in self.alerts or ():
            if spec.rule_name in seen:
                raise ValueError(f"alerts: two rules are named {spec.rule_name!r}; give them distinct names")
            seen.add(spec.rule_name)
        return self

    @model_validator(mode="after")
    def _entry_point_only_for_python(self) -> Manifest:
        if ":" in self.model_file and self.flavor != "python":
            raise ValueError('model_file may name FILE:FUNCTION only for flavor = "python"')
        return self

    @property
    def model_path(self) -> str:
        """The file that holds the model (for python models, the FILE of FILE:FUNCTION)."""
        return self.model_file.partition(":")[0]


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _too_deep() -> str:
    return f"{MANIFEST_FILE} is nested too deeply: at most {MAX_NESTING} levels of tables and arrays"


def _nesting(value: object) -> int:
    """How deeply tables and arrays nest in ``value`` (walked without recursion: the input is hostile)."""
    deepest = 0
    todo: list[tuple[object, int]] = [(value, 0)]
    while todo:
        node, depth = todo.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            break
        todo.extend((child, depth + 1) for child in children)
    return deepest


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest bytes; raises ValueError with one line per problem."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"{MANIFEST_FILE} is {len(data)} bytes; the limit is {MAX_MANIFEST_BYTES}")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{MANIFEST_FILE} is not UTF-8: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{MANIFEST_FILE} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ValueError(_too_deep()) from None
    if _nesting(raw) > MAX_NESTING:
        raise ValueError(_too_deep())
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{MANIFEST_FILE}: {_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ValueError("\n".join(lines)) from None
