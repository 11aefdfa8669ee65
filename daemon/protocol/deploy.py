"""Deployment requests, results and the validation of what a user may ask a container to be.

Environment variables and container options reach ``docker run`` or a child process, so they are checked
here, on both sides of the socket: names are shell-safe identifiers, values are printable single lines, and
container options come from a closed allowlist (CPU, memory, log size). Anything else — privileged mode,
host mounts, devices, capabilities, another network — has no field to be sent in.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .names import check_model_name, check_text

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_ENV_VALUE = 4096
MAX_ENV_VARS = 64
#: Variables the runtime or the backends set themselves; a user cannot override them.
RESERVED_ENV_PREFIXES = ("MODELTUI_", "PYTHON", "LD_", "PATH")

Backend = Literal["process", "docker"]
DeploymentState = Literal["pending", "building", "starting", "running", "degraded", "crashloop", "failed", "stopped"]
Health = Literal["unknown", "healthy", "unhealthy"]


def check_env_name(value: str) -> str:
    if not ENV_NAME_RE.fullmatch(value):
        raise ValueError(
            f"invalid environment variable name {value[:40]!r}: use letters, digits and '_', not starting with a digit"
        )
    if value.upper().startswith(RESERVED_ENV_PREFIXES) or value.upper() == "HOME":
        raise ValueError(f"environment variable {value!r} is reserved (set by modeltui or the Python runtime)")
    return value


def check_env_value(value: str) -> str:
    """One printable line: a newline or NUL could forge another variable in an env file or a header."""
    return check_text(value, limit=MAX_ENV_VALUE, what="environment value", multiline=False)


def check_deployment_name(value: str) -> str:
    try:
        return check_model_name(value)
    except ValueError:
        raise ValueError(
            f"invalid deployment name {value[:40]!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        ) from None


EnvName = Annotated[str, AfterValidator(check_env_name)]
EnvValue = Annotated[str, AfterValidator(check_env_value)]
DeploymentName = Annotated[str, AfterValidator(check_deployment_name)]
Port = Annotated[int, Field(ge=1024, le=65535)]


class ContainerOptions(BaseModel):
    """The only knobs a deployment may turn on its container (the allowlist). Unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    cpus: Annotated[float, Field(gt=0, le=256)] | None = None
    memory_mb: Annotated[int, Field(ge=32, le=1 << 20)] | None = None
    log_max_mb: Annotated[int, Field(ge=1, le=1024)] = 10
    log_files: Annotated[int, Field(ge=1, le=20)] = 3


class InstanceInfo(BaseModel):
    """One running copy of a version (a process or a container)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    version: int
    key: str = Field(description="pid:start-time for a process, the container id for Docker")
    admin_url: str = Field(description="health and metrics of this instance only")
    started_at: datetime


class DeploymentInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    ref: str = Field(description="what was deployed: NAME@ALIAS follows the alias, NAME:N is pinned")
    model: str
    version: int | None = Field(description="the version serving now")
    backend: Backend
    desired: Literal["running", "stopped"]
    state: DeploymentState
    health: Health
    endpoint: str | None
    port: int
    restarts: int
    message: str = Field(description="the last reason: why it failed, what the last rollout did")
    env: dict[str, str]
    options: ContainerOptions
    instance: InstanceInfo | None
    rollout_to: int | None = Field(default=None, description="the version a rollout in progress is starting")
    image: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = Field(description="when the serving instance started (uptime)")


class DeploymentEventInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    at: datetime
    kind: str
    version: int | None
    message: str
