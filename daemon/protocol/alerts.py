"""Alert rules: ``METRIC OP THRESHOLD [for DURATION]``, parsed and validated strictly.

Shared by the daemon (rules from the CLI and from manifests) and the clients (validation before sending), so
both refuse the same rules with the same messages.

- METRIC: one of ``METRICS``; ``drift_psi`` / ``drift_ks`` are the maximum over features, and
  ``drift_psi{feature="x"}`` is one feature's value.
- OP: ``<  <=  >  >=  ==  !=``; THRESHOLD: a finite decimal number (``0.85``, ``-1``, ``2e-3``).
- DURATION: a whole number with ``s``, ``m``, ``h`` or ``d`` (``30s``, ``10m``, ``1h``); ``0`` alone is allowed.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

METRICS: tuple[str, ...] = (
    "f1",
    "accuracy",
    "precision",
    "recall",
    "error_rate",
    "client_error_rate",
    "p50_latency_seconds",
    "p95_latency_seconds",
    "p99_latency_seconds",
    "request_rate",
    "drift_psi",
    "drift_ks",
    "up",
)
#: Metrics that take a ``{feature="…"}`` selector.
PER_FEATURE = ("drift_psi", "drift_ks")
Op = Literal["<", "<=", ">", ">=", "==", "!="]
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_OP_WORDS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}
Severity = Literal["info", "warning", "critical"]
AlertStateName = Literal["inactive", "pending", "firing"]
#: What a transition leads to: ``resolved`` = firing → inactive; ``inactive`` = pending → inactive.
TransitionName = Literal["pending", "firing", "resolved", "inactive"]

DEFAULT_WINDOW_SECONDS = 300
MIN_WINDOW_SECONDS = 10
MAX_WINDOW_SECONDS = 30 * 86_400
MAX_FOR_SECONDS = 30 * 86_400
MAX_RULE_CHARS = 200
RULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
RuleName = Annotated[str, Field(pattern=RULE_NAME_PATTERN)]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"^(\d{1,9})([smhd])$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_RULE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:\{\s*(?P<selector>[^}]*)\})?"
    r"\s*(?P<op><=|>=|==|!=|<|>|=)?"
    r"\s*(?P<threshold>[^\s]*)"
    r"(?P<rest>.*?)\s*$",
    re.DOTALL,
)
_SELECTOR = re.compile(r'^feature\s*=\s*"(?P<feature>[^"\\\x00-\x1f]{1,256})"$')


def parse_duration(text: str, *, what: str = "duration") -> int:
    """``30s``, ``5m``, ``1h``, ``2d`` (or ``0``) → seconds. Raises ValueError naming the problem."""
    t = text.strip().lower()
    if t == "0":
        return 0
    m = _DURATION.match(t)
    if m is None:
        raise ValueError(f"bad {what} {text[:40]!r}: use a whole number with s, m, h or d (30s, 5m, 1h, 2d)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: int) -> str:
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _format_number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


class Condition(BaseModel):
    """A parsed rule expression."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    feature: str | None = None
    op: Op
    threshold: float
    for_seconds: int = 0

    @property
    def metric_text(self) -> str:
        return self.metric if self.feature is None else f'{self.metric}{{feature="{self.feature}"}}'

    @property
    def expr(self) -> str:
        """The canonical text (parses back to the same condition)."""
        text = f"{self.metric_text} {self.op} {_format_number(self.threshold)}"
        return text + (f" for {format_duration(self.for_seconds)}" if self.for_seconds else "")

    def default_name(self) -> str:
        feature = f"_{self.feature}" if self.feature else ""
        name = f"{self.metric}{feature}_{_OP_WORDS[self.op]}_{_format_number(self.threshold)}"
        name = re.sub(r"[^A-Za-z0-9_.:-]", "_", name)[:64]
        return name

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)


def parse_rule(text: str) -> Condition:
    """Parse ``METRIC OP THRESHOLD [for DURATION]``; raises ValueError with one clear message."""
    if not isinstance(text, str):
        raise ValueError("an alert rule is a string such as 'f1 < 0.85 for 10m'")
    if len(text) > MAX_RULE_CHARS:
        raise ValueError(f"alert rule is {len(text)} characters; the limit is {MAX_RULE_CHARS}")
    if not text.strip():
        raise ValueError("empty alert rule: write METRIC OP THRESHOLD [for DURATION], e.g. 'f1 < 0.85 for 10m'")
    m = _RULE.match(text)
    if m is None:  # pragma: no cover - the pattern accepts any text starting with a name
        raise ValueError(f"alert rule {text[:60]!r}: write METRIC OP THRESHOLD [for DURATION]")
    metric = m.group("metric")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric[:40]!r}; known: {', '.join(METRICS)}")
    feature: str | None = None
    selector = m.group("selector")
    if selector is not None:
        if metric not in PER_FEATURE:
            raise ValueError(f"{metric} takes no {{…}} selector (only {' and '.join(PER_FEATURE)} do)")
        sm = _SELECTOR.match(selector.strip())
        if sm is None:
            raise ValueError(f'bad selector {{{selector[:60]}}}: write {metric}{{feature="NAME"}}')
        feature = sm.group("feature")
    op = m.group("op")
    if op is None:
        raise ValueError(f"alert rule {text[:60]!r}: a comparison (<, <=, >, >=, ==, !=) must follow {metric}")
    if op == "=":
        raise ValueError("use == to compare for equality (= is not an operator)")
    raw = m.group("threshold")
    if not raw:
        raise ValueError(f"alert rule {text[:60]!r}: a number must follow {op}")
    if _NUMBER.match(raw) is None:
        raise ValueError(f"bad number {raw[:40]!r} after {op}")
    threshold = float(raw)
    if not math.isfinite(threshold):  # pragma: no cover - the pattern admits no inf/nan, but huge exponents
        raise ValueError(f"bad number {raw[:40]!r}: not finite")
    rest = m.group("rest").strip()
    for_seconds = 0
    if rest:
        words = rest.split()
        if words[0].lower() != "for":
            raise ValueError(f"unexpected {rest[:40]!r} after the threshold; only 'for DURATION' may follow")
        if len(words) != 2:
            raise ValueError(f"'for' takes one duration such as 30s, 5m or 1h; got {' '.join(words[1:])[:40]!r}")
        for_seconds = parse_duration(words[1])
        if for_seconds > MAX_FOR_SECONDS:
            raise ValueError(f"'for' {words[1]} is longer than the limit of 30d")
    return Condition(metric=metric, feature=feature, op=op, threshold=threshold, for_seconds=for_seconds)


def _window(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value, what="window")
    return value


class AlertSpec(BaseModel):
    """One rule as written by a person: in a manifest's ``[[alerts]]`` table or through ``alerts.add``.
    ``window`` is seconds or a duration string (``"5m"``); ``name`` defaults to one derived from the rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: Annotated[str, Field(max_length=MAX_RULE_CHARS)]
    severity: Severity = "warning"
    name: RuleName | None = None
    window: Annotated[int, Field(ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)] = DEFAULT_WINDOW_SECONDS

    @field_validator("rule")
    @classmethod
    def _valid_rule(cls, value: str) -> str:
        return parse_rule(value).expr

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("window is a duration such as 5m, or seconds")
        return _window(value)

    @property
    def condition(self) -> Condition:
        return parse_rule(self.rule)

    @property
    def rule_name(self) -> str:
        return self.name or self.condition.default_name()


#: Rules a deployment gets when neither it nor its version's manifest has any (docs/monitoring.md, "Alerts").
BUILTIN_RULES: tuple[AlertSpec, ...] = (
    AlertSpec(rule="up == 0 for 1m", severity="critical", name="down"),
    AlertSpec(rule="error_rate > 0.05 for 5m", severity="warning", name="errors"),
)
