"""Events the daemon pushes to subscribed connections, so clients never poll."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .alerts import Severity, TransitionName


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegistryEvent(_Event):
    """Something in the registry changed; clients re-read what they show."""

    topic: Literal["registry"] = "registry"
    kind: Literal[
        "version.pushed",
        "version.removed",
        "version.tagged",
        "version.signed",
        "model.removed",
        "model.described",
        "alias.moved",
    ]
    model: str
    version: int | None = None
    alias: str | None = None


class DeploymentEvent(_Event):
    """A deployment changed state, health, version or endpoint; clients re-read it."""

    topic: Literal["deployments"] = "deployments"
    kind: Literal["created", "changed", "rollout", "removed", "progress"]
    deployment: str
    state: str | None = None
    version: int | None = None
    message: str = ""


class LogEvent(_Event):
    """New lines of a followed deployment's log, sent to the connections following it (in batches, so a
    flood of lines costs one frame per batch)."""

    topic: Literal["logs"] = "logs"
    deployment: str
    lines: list[str]

    @property
    def route(self) -> str:
        return f"logs:{self.deployment}"


class ProgressEvent(_Event):
    """Progress of a long request, sent only to the connection that made it."""

    topic: Literal["progress"] = "progress"
    request_id: int
    done: Annotated[int, Field(ge=0)]
    total: Annotated[int, Field(ge=0)]
    path: str = ""


class AlertEvent(_Event):
    """An alert of a deployment changed state: ``pending`` (the condition holds, waiting for ``for``),
    ``firing``, ``resolved`` (it was firing and holds no more) or ``inactive`` (it was pending and holds no
    more). Sent to every connection subscribed to "alerts"."""

    topic: Literal["alerts"] = "alerts"
    deployment: str
    rule: str
    severity: Severity
    state: TransitionName
    value: float | None = None
    message: str = ""
    expr: str = ""
    at: datetime | None = None


Event = Annotated[RegistryEvent | DeploymentEvent | LogEvent | ProgressEvent | AlertEvent, Field(discriminator="topic")]
