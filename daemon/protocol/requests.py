"""Requests: one frozen pydantic model per operation, discriminated by ``op``.

``RESULT_OF`` names the result type of each request; a test checks that every request type has exactly one
handler in the daemon.
"""

from __future__ import annotations

from typing import Annotated, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from . import results as r
from .access import Role
from .alerts import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS, RuleName, Severity, parse_rule
from .deploy import Backend, ContainerOptions, DeploymentName, EnvName, EnvValue, Port
from .names import AliasName, Line, ModelName, RefStr, RelPath, Sha256, TagKey, TagValue, Text
from .values import Count, Ordinal, UtcTime

MAX_UPLOAD_FILES = 128
MAX_CHECKOUT_FILES = 128
#: A push lists every file in one frame; 50,000 entries stay well inside the frame cap.
MAX_PUSH_FILES = 50_000
#: A century: a longer grace period means "keep everything" just as well (and overflows date arithmetic).
MAX_GC_GRACE_SECONDS = 100 * 366 * 86_400


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @property
    def fd_count(self) -> int:
        """How many file descriptors travel with this request (SCM_RIGHTS)."""
        return 0


class Ping(_Request):
    op: Literal["ping"] = "ping"


class DaemonStatusRequest(_Request):
    op: Literal["daemon.status"] = "daemon.status"


class DaemonStop(_Request):
    op: Literal["daemon.stop"] = "daemon.stop"


class Subscribe(_Request):
    """Start receiving events on this connection for the given topics."""

    op: Literal["subscribe"] = "subscribe"
    topics: Annotated[list[Literal["registry", "deployments", "alerts"]], Field(min_length=1, max_length=8)]


class ListModels(_Request):
    op: Literal["models.list"] = "models.list"
    query: Annotated[str, Field(max_length=128)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 200
    offset: Count = 0


class GetModel(_Request):
    op: Literal["models.get"] = "models.get"
    name: ModelName


class DescribeModel(_Request):
    """Set a model's description."""

    op: Literal["models.describe"] = "models.describe"
    name: ModelName
    description: Text


class RemoveModel(_Request):
    op: Literal["models.rm"] = "models.rm"
    name: ModelName
    force: bool = False


class Log(_Request):
    op: Literal["versions.log"] = "versions.log"
    name: ModelName
    limit: Annotated[int, Field(ge=1, le=10_000)] = 100
    offset: Count = 0


class Show(_Request):
    op: Literal["versions.show"] = "versions.show"
    ref: RefStr


class Diff(_Request):
    op: Literal["versions.diff"] = "versions.diff"
    a: RefStr
    b: RefStr


class UploadFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: RelPath
    size: Count


class Upload(_Request):
    """Stream files into the object store; one descriptor per file is passed with the frame."""

    op: Literal["objects.upload"] = "objects.upload"
    files: Annotated[list[UploadFile], Field(min_length=1, max_length=MAX_UPLOAD_FILES)]

    @property
    def fd_count(self) -> int:
        return len(self.files)


class PushFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: RelPath
    sha256: Sha256
    size: Count
    executable: bool = False


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    git_commit: Annotated[str, Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")] | None = None
    git_dirty: bool = False
    path: Annotated[str, Field(max_length=4096)] | None = None


class VersionMeta(_Request):
    """What a push says about the version besides its files."""

    name: ModelName | None = None
    message: Text = ""
    tags: Annotated[dict[TagKey, TagValue], Field(max_length=100)] = Field(default_factory=dict)
    alias: AliasName | None = None
    source: Source | None = None


class Push(VersionMeta):
    """Create a version from uploaded objects. Identical content returns the existing version."""

    op: Literal["versions.push"] = "versions.push"
    files: Annotated[list[PushFile], Field(min_length=1, max_length=MAX_PUSH_FILES)]


class NewFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: RelPath
    size: Count
    executable: bool = False


class PushFiles(VersionMeta):
    """Upload and create a version in one round trip: one descriptor per file comes with the frame.
    For directories of at most MAX_UPLOAD_FILES files; larger ones use objects.upload, then versions.push."""

    op: Literal["versions.push_files"] = "versions.push_files"
    files: Annotated[list[NewFile], Field(min_length=1, max_length=MAX_UPLOAD_FILES)]

    @property
    def fd_count(self) -> int:
        return len(self.files)


class Checkout(_Request):
    """A page of a version's files, each with an open read-only descriptor: paged so neither side ever
    holds more than MAX_CHECKOUT_FILES descriptors for one request."""

    op: Literal["versions.checkout"] = "versions.checkout"
    ref: RefStr
    offset: Count = 0
    limit: Annotated[int, Field(ge=1, le=MAX_CHECKOUT_FILES)] = MAX_CHECKOUT_FILES


class Tag(_Request):
    op: Literal["versions.tag"] = "versions.tag"
    ref: RefStr
    set: Annotated[dict[TagKey, TagValue], Field(max_length=100)] = Field(default_factory=dict)
    unset: Annotated[list[TagKey], Field(max_length=100)] = Field(default_factory=list)


class RemoveVersion(_Request):
    op: Literal["versions.rm"] = "versions.rm"
    ref: RefStr
    force: bool = False


class AliasSet(_Request):
    op: Literal["aliases.set"] = "aliases.set"
    name: ModelName
    alias: AliasName
    version: Ordinal
    reason: Line = ""


class AliasRemove(_Request):
    op: Literal["aliases.rm"] = "aliases.rm"
    name: ModelName
    alias: AliasName
    reason: Line = ""


class AliasHistoryRequest(_Request):
    op: Literal["aliases.history"] = "aliases.history"
    name: ModelName
    alias: AliasName | None = None
    at: UtcTime | None = None
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000


class Rollback(_Request):
    """Move an alias back to the version it pointed to before its last move."""

    op: Literal["aliases.rollback"] = "aliases.rollback"
    name: ModelName
    alias: AliasName
    reason: Line = ""


class Gc(_Request):
    op: Literal["store.gc"] = "store.gc"
    dry_run: bool = False
    grace_seconds: Annotated[int, Field(ge=0, le=MAX_GC_GRACE_SECONDS)] | None = None


class Deploy(_Request):
    """Deploy a version. ``NAME@ALIAS`` follows the alias (each move rolls out); ``NAME:N`` is pinned;
    ``NAME`` means the latest version, pinned. With ``wait`` the answer comes when the first instance is
    healthy (or has failed); build and start progress arrive as progress events meanwhile."""

    op: Literal["deployments.create"] = "deployments.create"
    ref: RefStr
    name: DeploymentName | None = None
    backend: Backend = "process"
    port: Port | None = None
    env: Annotated[dict[EnvName, EnvValue], Field(max_length=64)] = Field(default_factory=dict)
    options: ContainerOptions = Field(default_factory=ContainerOptions)
    wait: bool = True
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 300.0


class Undeploy(_Request):
    op: Literal["deployments.rm"] = "deployments.rm"
    name: DeploymentName


class ListDeployments(_Request):
    op: Literal["deployments.list"] = "deployments.list"
    model: str | None = None
    all_hosts: bool = Field(default=False, description="also the deployments other daemons of the cluster run")


class GetDeployment(_Request):
    op: Literal["deployments.get"] = "deployments.get"
    name: DeploymentName
    events: Annotated[int, Field(ge=0, le=1000)] = 20


class RestartDeployment(_Request):
    """Start the deployment again (a new instance, rolled out like a version change)."""

    op: Literal["deployments.restart"] = "deployments.restart"
    name: DeploymentName


class Logs(_Request):
    """The last ``tail`` lines of a deployment's log; with ``follow`` new lines keep arriving as log events
    on this connection until it closes."""

    op: Literal["deployments.logs"] = "deployments.logs"
    name: DeploymentName
    tail: Annotated[int, Field(ge=0, le=100_000)] = 100
    follow: bool = False


class MetricsRequest(_Request):
    """Derived metrics of a deployment over the last ``window_seconds`` (60 s to 30 days)."""

    op: Literal["metrics.get"] = "metrics.get"
    name: DeploymentName
    window_seconds: Annotated[int, Field(ge=60, le=30 * 86_400)] = 3600


class AlertsListRequest(_Request):
    """Current alerts (pending and firing), optionally of one deployment, with the latest transitions."""

    op: Literal["alerts.list"] = "alerts.list"
    deployment: DeploymentName | None = None
    history: Annotated[int, Field(ge=0, le=10_000)] = 0


class AlertRulesRequest(_Request):
    """The rules that apply to each deployment (or one), with where each comes from."""

    op: Literal["alerts.rules"] = "alerts.rules"
    deployment: DeploymentName | None = None


class AlertAdd(_Request):
    """Add (or replace, by name) a rule of a deployment. The first edit copies the rules it inherited
    (manifest or built-in) into its own."""

    op: Literal["alerts.add"] = "alerts.add"
    deployment: DeploymentName
    rule: Annotated[str, Field(max_length=200)]
    severity: Severity = "warning"
    name: RuleName | None = None
    window_seconds: Annotated[int, Field(ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)] = 300

    @field_validator("rule")
    @classmethod
    def _valid_rule(cls, value: str) -> str:
        return parse_rule(value).expr


class AlertRemove(_Request):
    op: Literal["alerts.rm"] = "alerts.rm"
    deployment: DeploymentName
    name: RuleName


PolicyKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]
PolicyValue = Annotated[str, Field(max_length=4096)]


class MaintainSet(_Request):
    """Override keys of a model's maintenance policy (``key=value``; see docs/maintenance.md); ``unset``
    returns keys to the manifest's value. The whole resulting policy is checked before anything is stored."""

    op: Literal["maintain.set"] = "maintain.set"
    name: ModelName
    set: Annotated[dict[PolicyKey, PolicyValue], Field(max_length=50)] = Field(default_factory=dict)
    unset: Annotated[list[PolicyKey], Field(max_length=50)] = Field(default_factory=list)


class MaintainPolicyRequest(_Request):
    op: Literal["maintain.policy"] = "maintain.policy"
    name: ModelName


class MaintainRunNow(_Request):
    """Start a run now (one per model at a time)."""

    op: Literal["maintain.run_now"] = "maintain.run_now"
    name: ModelName


class MaintainRuns(_Request):
    op: Literal["maintain.runs"] = "maintain.runs"
    name: ModelName | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 50


class MaintainShow(_Request):
    op: Literal["maintain.show"] = "maintain.show"
    run: Ordinal


class MaintainDecide(_Request):
    """Approve (promote and roll out) or reject a challenger awaiting approval."""

    op: Literal["maintain.decide"] = "maintain.decide"
    run: Ordinal
    approve: bool
    reason: Text = ""


class MaintainCancel(_Request):
    """Stop a run that is running (its worker is killed, no later step starts) or awaiting approval."""

    op: Literal["maintain.cancel"] = "maintain.cancel"
    run: Ordinal
    reason: Text = ""


class MaintainPause(_Request):
    """Pause (or resume) the maintenance of one model, or of every model (the global switch) without a name.
    A paused model, or any model while the global switch is on, starts no run: scheduled, alert or manual."""

    op: Literal["maintain.pause"] = "maintain.pause"
    name: ModelName | None = None
    paused: bool = True


class AuditRequest(_Request):
    """Recorded changes and refusals, newest first (``modeltui audit``)."""

    op: Literal["audit.list"] = "audit.list"
    since: UtcTime | None = None
    user: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=10_000)] = 200


class DoctorRequest(_Request):
    """The daemon's checks of itself: database, disk, directories, and every configured service."""

    op: Literal["daemon.doctor"] = "daemon.doctor"


class ClusterStatusRequest(_Request):
    """The ZooKeeper connection, the daemons and their deployments, the elections' leaders, the cache's age."""

    op: Literal["cluster.status"] = "cluster.status"


Request = Annotated[
    Ping
    | DaemonStatusRequest
    | DaemonStop
    | Subscribe
    | ListModels
    | GetModel
    | DescribeModel
    | RemoveModel
    | Log
    | Show
    | Diff
    | Upload
    | Push
    | PushFiles
    | Checkout
    | Tag
    | RemoveVersion
    | AliasSet
    | AliasRemove
    | AliasHistoryRequest
    | Rollback
    | Gc
    | Deploy
    | Undeploy
    | ListDeployments
    | GetDeployment
    | RestartDeployment
    | Logs
    | MetricsRequest
    | AlertsListRequest
    | AlertRulesRequest
    | AlertAdd
    | AlertRemove
    | ClusterStatusRequest
    | MaintainSet
    | MaintainPolicyRequest
    | MaintainRunNow
    | MaintainRuns
    | MaintainShow
    | MaintainDecide
    | MaintainCancel
    | MaintainPause
    | AuditRequest
    | DoctorRequest,
    Field(discriminator="op"),
]

REQUEST_ADAPTER: TypeAdapter[Request] = TypeAdapter(Request)

RESULT_OF: dict[type[_Request], type[r.Result]] = {
    Ping: r.Pong,
    DaemonStatusRequest: r.DaemonStatus,
    DaemonStop: r.Ack,
    Subscribe: r.Ack,
    ListModels: r.ModelList,
    GetModel: r.ModelDetail,
    DescribeModel: r.ModelDetail,
    RemoveModel: r.RemoveResult,
    Log: r.VersionList,
    Show: r.VersionDetail,
    Diff: r.VersionDiff,
    Upload: r.UploadResult,
    Push: r.PushResult,
    PushFiles: r.PushResult,
    Checkout: r.CheckoutResult,
    Tag: r.VersionSummary,
    RemoveVersion: r.RemoveResult,
    AliasSet: r.AliasEventInfo,
    AliasRemove: r.AliasEventInfo,
    AliasHistoryRequest: r.AliasHistory,
    Rollback: r.AliasEventInfo,
    Gc: r.GcResult,
    Deploy: r.DeploymentDetail,
    Undeploy: r.DeploymentDetail,
    ListDeployments: r.DeploymentList,
    GetDeployment: r.DeploymentDetail,
    RestartDeployment: r.DeploymentDetail,
    Logs: r.LogLines,
    MetricsRequest: r.DeploymentMetrics,
    AlertsListRequest: r.AlertList,
    AlertRulesRequest: r.AlertRuleList,
    AlertAdd: r.AlertRuleList,
    AlertRemove: r.AlertRuleList,
    ClusterStatusRequest: r.ClusterStatus,
    MaintainSet: r.MaintainPolicyInfo,
    MaintainPolicyRequest: r.MaintainPolicyInfo,
    MaintainRunNow: r.MaintainRunInfo,
    MaintainRuns: r.MaintainRunList,
    MaintainShow: r.MaintainRunInfo,
    MaintainDecide: r.MaintainRunInfo,
    MaintainCancel: r.MaintainRunInfo,
    MaintainPause: r.MaintainPauseInfo,
    AuditRequest: r.AuditList,
    DoctorRequest: r.DoctorReport,
}

#: Requests that change state (audited and, in system mode, need the operator role; see issue 7).
_MUTATING: list[type[_Request]] = [DaemonStop, DescribeModel, RemoveModel, Upload, Push, PushFiles, Tag]
_MUTATING += [RemoveVersion, AliasSet, AliasRemove, Rollback, Gc, Deploy, Undeploy, RestartDeployment]
_MUTATING += [AlertAdd, AlertRemove, MaintainSet, MaintainRunNow, MaintainDecide, MaintainCancel, MaintainPause]
MUTATING: frozenset[type[_Request]] = frozenset(_MUTATING)

#: The role each request needs (docs/operations.md, "Access control"): a test checks every type has one.
#: Viewers read; operators change models, aliases, deployments, alerts and maintenance; admins also remove
#: versions and models, collect garbage and stop the daemon.
_VIEWER: list[type[_Request]] = [Ping, DaemonStatusRequest, Subscribe, ListModels, GetModel, Log, Show, Diff]
_VIEWER += [Checkout, AliasHistoryRequest, ListDeployments, GetDeployment, Logs, MetricsRequest]
_VIEWER += [AlertsListRequest, AlertRulesRequest, ClusterStatusRequest, MaintainPolicyRequest, MaintainRuns]
_VIEWER += [MaintainShow, DoctorRequest]
_ADMIN: list[type[_Request]] = [DaemonStop, RemoveModel, RemoveVersion, Gc]
ROLE_OF: dict[type[_Request], Role] = {}
for _types, _role in ((_VIEWER, "viewer"), (MUTATING, "operator"), (_ADMIN, "admin"), ([AuditRequest], "operator")):
    ROLE_OF.update(dict.fromkeys(_types, cast(Role, _role)))
