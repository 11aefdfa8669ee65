"""Where things live in ZooKeeper (under the configured chroot) and what the nodes hold.

Every node's data is JSON validated by a pydantic model like any input from a peer: a node that is not
valid (corrupt, oversized, from a hostile writer) is ignored with a warning by whoever reads it.

    /models/<name>                         the model (data: {"created": ...})
    /models/<name>/versions/<n:010d>       a version: metadata and file digests (VersionNode)
    /models/<name>/aliases/<alias>         where an alias points (AliasNode); moves are compare-and-set
    /models/<name>/history/ev-<seq>        every alias move (AliasMoveNode) and tag or description change
                                           (ChangeNode), in order (sequential)
    /hosts/<host-id>                       a daemon (ephemeral, HostNode)
    /deployments/<name>/<host-id>          a deployment running on a daemon (ephemeral, DeploymentNode)
    /leader/<job>/c-<host-id>-<seq>        candidates of an election (ephemeral sequential)
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from daemon.protocol.deploy import check_deployment_name
from daemon.protocol.names import check_alias, check_model_name, check_rel_path, check_tag_key, check_tag_value

#: The largest node this code writes or reads (ZooKeeper's own default limit is 1 MiB).
MAX_NODE = 512 << 10
HEX64 = r"^[0-9a-f]{64}$"

ModelName = Annotated[str, AfterValidator(check_model_name)]
AliasName = Annotated[str, AfterValidator(check_alias)]
TagKey = Annotated[str, AfterValidator(check_tag_key)]
TagValue = Annotated[str, AfterValidator(check_tag_value)]


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class FileNode(Node):
    path: Annotated[str, AfterValidator(check_rel_path), Field(max_length=4096)]
    size: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern=HEX64)]
    executable: bool = False


class VersionNode(Node):
    model: ModelName
    number: Annotated[int, Field(ge=1)]
    digest: Annotated[str, Field(pattern=HEX64)]
    parent: int | None = None
    flavor: Annotated[str, Field(max_length=64)]
    message: Annotated[str, Field(max_length=10_000)] = ""
    tags: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    signature: dict[str, Any] = Field(default_factory=dict)
    requirements: list[str] = Field(default_factory=list)
    description: Annotated[str, Field(max_length=10_000)] = ""
    model_file: Annotated[str, Field(max_length=4096)]
    manifest: Annotated[str, Field(max_length=256 << 10)]
    source: dict[str, Any] = Field(default_factory=dict)
    created_by: Annotated[str, Field(max_length=256)]
    created_at: datetime
    size: Annotated[int, Field(ge=0)]
    files: Annotated[list[FileNode], Field(min_length=1, max_length=10_000)]
    host: Annotated[str, Field(max_length=256)] = ""


class AliasNode(Node):
    version: Annotated[int, Field(ge=1)]
    by: Annotated[str, Field(max_length=256)]
    at: datetime
    reason: Annotated[str, Field(max_length=10_000)] = ""


class AliasMoveNode(Node):
    alias: AliasName
    from_version: int | None = None
    to_version: int | None = None
    by: Annotated[str, Field(max_length=256)]
    at: datetime
    reason: Annotated[str, Field(max_length=10_000)] = ""
    host: Annotated[str, Field(max_length=256)] = ""


class ChangeNode(Node):
    """A change to a model other than an alias move, in the same history: tags of a version, or the model's
    description (``kind`` tells which; entries without ``kind`` are alias moves)."""

    kind: Literal["tag", "describe"]
    version: Annotated[int, Field(ge=1)] | None = None
    set: Annotated[dict[TagKey, TagValue], Field(max_length=100)] = Field(default_factory=dict)
    unset: Annotated[list[TagKey], Field(max_length=100)] = Field(default_factory=list)
    description: Annotated[str, Field(max_length=10_000)] | None = None
    by: Annotated[str, Field(max_length=256)]
    at: datetime
    host: Annotated[str, Field(max_length=256)] = ""


def decode_history(data: bytes | None) -> AliasMoveNode | ChangeNode:
    """A history entry: an alias move, or another change (by its ``kind``)."""
    raw = _parse(data)
    kind: type[AliasMoveNode] | type[ChangeNode] = AliasMoveNode
    if isinstance(raw, dict) and "kind" in raw:
        kind = ChangeNode
    return _validate(kind, raw)


class HostNode(Node):
    id: Annotated[str, Field(max_length=200)]
    host: Annotated[str, Field(max_length=256)]
    pid: int
    socket: Annotated[str, Field(max_length=4096)]
    capabilities: list[str] = Field(default_factory=list)
    started_at: datetime
    version: Annotated[str, Field(max_length=64)] = ""


class DeploymentNode(Node):
    name: Annotated[str, AfterValidator(check_deployment_name)]
    host_id: Annotated[str, Field(max_length=200)]
    host: Annotated[str, Field(max_length=256)]
    model: ModelName
    version: int | None = None
    ref: Annotated[str, Field(max_length=300)]
    backend: Annotated[str, Field(max_length=32)]
    state: Annotated[str, Field(max_length=32)]
    health: Annotated[str, Field(max_length=32)]
    endpoint: Annotated[str, Field(max_length=300)] = ""


N = TypeVar("N", bound=Node)


class BadNode(ValueError):
    """A node's data that is not what its path says it holds."""


def encode(node: Node) -> bytes:
    data = node.model_dump_json().encode()
    if len(data) > MAX_NODE:
        raise BadNode(f"node data too large ({len(data)} bytes > {MAX_NODE})")
    return data


def decode(kind: type[N], data: bytes | None) -> N:
    """Validated node data; :class:`BadNode` with the reason otherwise."""
    return _validate(kind, _parse(data))


def _parse(data: bytes | None) -> Any:
    if data is None or not data:
        raise BadNode("empty node")
    if len(data) > MAX_NODE:
        raise BadNode(f"node data too large ({len(data)} bytes)")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadNode(f"not JSON: {str(exc)[:100]}") from None


def _validate(kind: type[N], raw: Any) -> N:
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadNode(f"{'.'.join(map(str, first['loc'])) or 'data'}: {first['msg']}") from None


class Paths:
    """Absolute node paths under ``chroot``."""

    def __init__(self, chroot: str) -> None:
        self.root = chroot.rstrip("/")
        self.models = f"{self.root}/models"
        self.hosts = f"{self.root}/hosts"
        self.deployments = f"{self.root}/deployments"
        self.leader = f"{self.root}/leader"

    def model(self, name: str) -> str:
        return f"{self.models}/{name}"

    def versions(self, name: str) -> str:
        return f"{self.models}/{name}/versions"

    def version(self, name: str, number: int) -> str:
        return f"{self.models}/{name}/versions/{number:010d}"

    def aliases(self, name: str) -> str:
        return f"{self.models}/{name}/aliases"

    def alias(self, name: str, alias: str) -> str:
        return f"{self.models}/{name}/aliases/{alias}"

    def history(self, name: str) -> str:
        return f"{self.models}/{name}/history"

    def host(self, host_id: str) -> str:
        return f"{self.hosts}/{host_id}"

    def deployment(self, name: str, host_id: str) -> str:
        return f"{self.deployments}/{name}/{host_id}"

    def election(self, job: str) -> str:
        return f"{self.leader}/{job}"


def version_number(child: str) -> int | None:
    """The number of a ``versions`` child (None: not a version node)."""
    return int(child) if len(child) == 10 and child.isdigit() and int(child) > 0 else None


def history_seq(child: str) -> int | None:
    """The sequence of a ``history`` child ``ev-<10 digits>`` (None: not one)."""
    tail = child.removeprefix("ev-")
    return int(tail) if tail != child and len(tail) == 10 and tail.isdigit() else None
