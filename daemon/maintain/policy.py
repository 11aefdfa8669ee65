"""A model's maintenance policy: when to make a challenger, how, on what data, and what it must beat.

It comes from the champion version's manifest (``[maintenance]``), overridden key by key by ``modeltui
maintain set``. Everything is checked when it is set (or pushed), never first at 3 a.m.: the cron
expression, the alert names, the gate's metric, the data files, that there is a training command.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from daemon.protocol.manifest import Manifest
from daemon.protocol.names import check_alias, check_rel_path

from .feedback import KEEP_ROWS
from .space import SearchSpec, parse_search
from .worker import METRICS

#: Gate metrics and whether greater is better (the worker computes them).
GATE_METRICS = METRICS
#: ``data`` naming the deployment's recent labelled feedback instead of a file.
FEEDBACK = "feedback"


def check_cron(value: str) -> str:
    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise ValueError(
            f"invalid cron schedule {value!r}: {exc} (use 5 fields: minute hour day month weekday)"
        ) from None
    return value


def check_data(value: str) -> str:
    return value if value == FEEDBACK else check_rel_path(value)


class Policy(BaseModel):
    """The effective policy of one model (defaults where neither the manifest nor an override says)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schedule: Annotated[str, AfterValidator(check_cron)] | None = None
    alerts: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=50)] = Field(
        default_factory=list
    )
    command: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    search: (
        Annotated[SearchSpec, BeforeValidator(lambda v: v if isinstance(v, SearchSpec) else parse_search(v))] | None
    ) = None
    data: Annotated[str, AfterValidator(check_data)] | None = None
    holdout: Annotated[str, AfterValidator(check_data)] | None = None
    target: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    metric: str = "f1"
    greater_is_better: bool | None = None
    min_improvement: Annotated[float, Field(ge=0)] = 0.0
    min_relative_improvement: Annotated[float, Field(ge=0, le=10)] = 0.0
    promote: Literal["auto", "approve"] = "approve"
    alias: Annotated[str, AfterValidator(check_alias)] = "production"
    paused: bool = False
    timeout_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] = 3600.0
    memory_mb: Annotated[int, Field(ge=64, le=1 << 20)] = 4096
    feedback_rows: Annotated[int, Field(ge=10, le=KEEP_ROWS)] = 10_000
    feedback_min_rows: Annotated[int, Field(ge=2, le=KEEP_ROWS)] = 50
    holdout_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in GATE_METRICS:
            raise ValueError(f"unknown gate metric {value!r}; known: {', '.join(GATE_METRICS)}")
        return value

    @property
    def higher_is_better(self) -> bool:
        return GATE_METRICS[self.metric] if self.greater_is_better is None else self.greater_is_better


#: Keys ``maintain set`` accepts, as they are written there (``key=value``).
KEYS = tuple(Policy.model_fields)


def effective(manifest: Manifest, overrides: dict[str, Any]) -> Policy:
    """The manifest's ``[maintenance]`` table (with ``[training]``/``[evaluation]`` as defaults), then the
    overrides; raises ValueError saying what is wrong."""
    base: dict[str, Any] = {}
    if manifest.training is not None:
        base["command"] = manifest.training.command
    if manifest.evaluation is not None:
        base["holdout"] = manifest.evaluation.data
        base["target"] = manifest.evaluation.target
    base.update(manifest.maintenance or {})
    base.update(overrides)
    try:
        return Policy.model_validate(base)
    except ValidationError as exc:
        problems = (f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors())
        raise ValueError("; ".join(problems)) from None


def parse_value(key: str, text: str) -> Any:
    """A ``maintain set`` value: lists comma-separated, booleans true/false, numbers as numbers, "" = unset."""
    if key not in KEYS:
        raise ValueError(f"unknown policy key {key!r}; known: {', '.join(KEYS)}")
    if key == "alerts":
        return [a.strip() for a in text.split(",") if a.strip()]
    if key == "search" and text:
        return parse_search(text).model_dump(mode="json")
    if key in ("paused", "greater_is_better"):
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        raise ValueError(f"{key}: use true or false")
    return text


def check_usable(
    policy: Policy,
    manifest: Manifest,
    files: Collection[str],
    alert_names: Collection[str],
    *,
    feedback_inputs: bool = True,
) -> list[str]:
    """What would make a run fail, said now: a training command, the data files in the version, the alert
    names among the model's rules."""
    problems: list[str] = []
    if policy.search is not None:
        if manifest.flavor != "sklearn":
            problems.append(f"search: the built-in search needs a sklearn model, not {manifest.flavor}")
        if policy.data is None:
            problems.append('search: no training data: set data (a CSV file of the version, or "feedback")')
    elif policy.command is None:
        problems.append(
            "no way to make a challenger: set command (placeholders {data}, {output}, {model_dir}) or search"
        )
    if FEEDBACK in (policy.data, policy.holdout) and not feedback_inputs:
        problems.append("feedback as data: the runtimes keep no inputs ([deploy] feedback_inputs = false)")
    if FEEDBACK in (policy.data, policy.holdout) and not (manifest.signature and manifest.signature.inputs):
        problems.append("feedback as data needs the model's [signature] inputs: they name the rows' columns")
    if policy.data not in (None, FEEDBACK) and policy.data not in files:
        problems.append(f"data: {policy.data!r} is not a file of the champion version")
    if policy.holdout is None:
        problems.append('no holdout data: set holdout (a CSV file of the version, or "feedback") and target')
    elif policy.holdout != FEEDBACK and policy.holdout not in files:
        problems.append(f"holdout: {policy.holdout!r} is not a file of the champion version")
    if policy.target is None and policy.holdout != FEEDBACK:
        problems.append("no target column: set target")
    if policy.feedback_min_rows > policy.feedback_rows:
        limits = f"feedback_min_rows ({policy.feedback_min_rows}) exceeds feedback_rows ({policy.feedback_rows})"
        problems.append(limits)
    unknown = [a for a in policy.alerts if a not in alert_names]
    if unknown:
        known = ", ".join(sorted(alert_names)) or "none"
        problems.append(f"unknown alert names: {', '.join(unknown)} (this model's rules: {known})")
    return problems
