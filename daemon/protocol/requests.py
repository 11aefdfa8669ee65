"""Requests: one frozen pydantic model per operation, discriminated by ``op``.

A request class states its own facts: its result type (``class Ping(BaseRequest[r.Pong])``), the role it
needs (``role``) and whether it changes state (``changes_state``: audited, refused by read-only clients).
Adding a request is this class, a member of ``Request`` and one handler method in the daemon; tests check
that every request type has a role, a result and exactly one handler.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, cast, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from . import results as r
from .access import Role
from .alerts import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS, RuleName, Severity, parse_rule
from .deploy import Backend, ContainerOptions, DeploymentName, EnvName, EnvValue, Port
from .errors import ErrorCode, ProtocolError
from .names import AliasName, Line, ModelName, RefStr, RelPath, Sha256, TagKey, TagValue, Text
from .signing import MAX_SIGNATURE_BYTES
from .values import Count, Ordinal, UtcTime

MAX_UPLOAD_FILES = 128
#: Bytes of content per objects.put frame (base64 makes 4/3 of it, well inside the frame cap).
MAX_PUT_CHUNK = 1 << 20
MAX_CHECKOUT_FILES = 128
#: A push lists every file in one frame; 50,000 entries stay well inside the frame cap.
MAX_PUSH_FILES = 50_000
#: A century: a longer grace period means "keep everything" just as well (and overflows date arithmetic).
MAX_GC_GRACE_SECONDS = 100 * 366 * 86_400


R = TypeVar("R", bound=r.Result)


class BaseRequest(BaseModel, Generic[R]):
    """A request whose answer is an ``R``. Subclasses set ``role``; the result type comes from ``[R]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the result type, taken from the class's ``BaseRequest[...]`` base when the class is made
    result: ClassVar[type[r.Result]]
    #: the least role a caller needs (docs/operations.md, "Access control")
    role: ClassVar[Role]
    #: audited, needs at least the operator role, and refused by a read-only client
    changes_state: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for base in cls.__mro__:
            meta = getattr(base, "__pydantic_generic_metadata__", None)
            if meta and meta["origin"] is BaseRequest and meta["args"]:
                cls.result = meta["args"][0]
                return

    @property
    def fd_count(self) -> int:
        """How many file descriptors travel with this request (SCM_RIGHTS)."""
        return 0

    @property
    def op_name(self) -> str:
        """The wire name of this request (``op``)."""
        return str(type(self).model_fields["op"].default)

    def audited(self, result: object) -> bool:
        """Whether this call, which changed state and succeeded with ``result``, gets an audit entry (a
        failure always does). A request sent in parts (objects.put) says yes only for the part that ends it."""
        return True

    def parse_result(self, raw: bytes) -> R:
        """The daemon's answer to this request, as its declared result type."""
        try:
            return cast(R, self.result.model_validate_json(raw))
        except ValidationError as exc:
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"unexpected {self.result.__name__} from the daemon: {exc}"
            ) from exc


class Ping(BaseRequest[r.Pong]):
    role: ClassVar[Role] = "viewer"

    op: Literal["ping"] = "ping"


class DaemonStatusRequest(BaseRequest[r.DaemonStatus]):
    role: ClassVar[Role] = "viewer"

    op: Literal["daemon.status"] = "daemon.status"


class DaemonStop(BaseRequest[r.Ack]):
    role: ClassVar[Role] = "admin"
    changes_state: ClassVar[bool] = True

    op: Literal["daemon.stop"] = "daemon.stop"


class Subscribe(BaseRequest[r.Ack]):
    """Start receiving events on this connection for the given topics."""

    role: ClassVar[Role] = "viewer"

    op: Literal["subscribe"] = "subscribe"
    topics: Annotated[list[Literal["registry", "deployments", "alerts"]], Field(min_length=1, max_length=8)]


#: The columns a models list shows, which ``models.list`` sorts by.
ModelSort = Literal["name", "versions", "latest", "aliases", "updated", "description"]


class ListModels(BaseRequest[r.ModelList]):
    """A page of models: ``query`` is a name substring (older clients), ``pattern`` the `/` filter's regex
    over every shown column (smart-case, a leading ``!`` inverts), sorted by ``sort``. ``limit`` reaches
    10,000 so a client can fill its cache in a few requests."""

    role: ClassVar[Role] = "viewer"

    op: Literal["models.list"] = "models.list"
    query: Annotated[str, Field(max_length=128)] | None = None
    pattern: Annotated[str, Field(max_length=256)] | None = None
    sort: ModelSort = "name"
    descending: bool = False
    limit: Annotated[int, Field(ge=1, le=10000)] = 200
    offset: Count = 0


class GetModel(BaseRequest[r.ModelDetail]):
    role: ClassVar[Role] = "viewer"

    op: Literal["models.get"] = "models.get"
    name: ModelName


class DescribeModel(BaseRequest[r.ModelDetail]):
    """Set a model's description."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["models.describe"] = "models.describe"
    name: ModelName
    description: Text


class RemoveModel(BaseRequest[r.RemoveResult]):
    role: ClassVar[Role] = "admin"
    changes_state: ClassVar[bool] = True

    op: Literal["models.rm"] = "models.rm"
    name: ModelName
    force: bool = False


class Log(BaseRequest[r.VersionList]):
    role: ClassVar[Role] = "viewer"

    op: Literal["versions.log"] = "versions.log"
    name: ModelName
    limit: Annotated[int, Field(ge=1, le=10_000)] = 100
    offset: Count = 0


class Show(BaseRequest[r.VersionDetail]):
    role: ClassVar[Role] = "viewer"

    op: Literal["versions.show"] = "versions.show"
    ref: RefStr


class Diff(BaseRequest[r.VersionDiff]):
    role: ClassVar[Role] = "viewer"

    op: Literal["versions.diff"] = "versions.diff"
    a: RefStr
    b: RefStr


class UploadFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: RelPath
    size: Count


class Upload(BaseRequest[r.UploadResult]):
    """Stream files into the object store; one descriptor per file is passed with the frame."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["objects.upload"] = "objects.upload"
    files: Annotated[list[UploadFile], Field(min_length=1, max_length=MAX_UPLOAD_FILES)]

    @property
    def fd_count(self) -> int:
        return len(self.files)


class PutObject(BaseRequest[r.PutResult]):
    """Send one object's content inside frames, for a client that cannot pass descriptors (over SSH).

    Chunks of at most MAX_PUT_CHUNK bytes (base64) go in order; the daemon appends each to a staging file
    and, at the last, checks size and sha256 and stores the object as objects.upload does. Start with
    ``offset`` 0 and no ``data``: the answer says whether the daemon has the object already (nothing to
    send) or how much of an interrupted upload it holds (go on from there)."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["objects.put"] = "objects.put"
    sha256: Sha256
    size: Count
    offset: Count = 0
    data: Annotated[str, Field(max_length=4 * ((MAX_PUT_CHUNK + 2) // 3))] = ""

    _chunk: bytes = PrivateAttr(b"")

    @model_validator(mode="after")
    def _base64(self) -> PutObject:
        try:  # decoded once, here: the handler takes the bytes from chunk()
            self._chunk = base64.b64decode(self.data, validate=True)
        except binascii.Error:
            raise ValueError("data must be base64") from None
        return self

    def chunk(self) -> bytes:
        """The content bytes this request carries."""
        return self._chunk

    def audited(self, result: object) -> bool:
        """One audit entry per object: for the call that stores it (or finds it stored), not every chunk."""
        return isinstance(result, r.PutResult) and result.stored


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


class VersionMeta(BaseRequest[r.PushResult]):
    """What a push says about the version besides its files."""

    name: ModelName | None = None
    message: Text = ""
    tags: Annotated[dict[TagKey, TagValue], Field(max_length=100)] = Field(default_factory=dict)
    alias: AliasName | None = None
    source: Source | None = None


class Push(VersionMeta):
    """Create a version from uploaded objects. Identical content returns the existing version."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

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

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["versions.push_files"] = "versions.push_files"
    files: Annotated[list[NewFile], Field(min_length=1, max_length=MAX_UPLOAD_FILES)]

    @property
    def fd_count(self) -> int:
        return len(self.files)


class Checkout(BaseRequest[r.CheckoutResult]):
    """A page of a version's files, each with an open read-only descriptor: paged so neither side ever
    holds more than MAX_CHECKOUT_FILES descriptors for one request."""

    role: ClassVar[Role] = "viewer"

    op: Literal["versions.checkout"] = "versions.checkout"
    ref: RefStr
    offset: Count = 0
    limit: Annotated[int, Field(ge=1, le=MAX_CHECKOUT_FILES)] = MAX_CHECKOUT_FILES


class Tag(BaseRequest[r.VersionSummary]):
    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["versions.tag"] = "versions.tag"
    ref: RefStr
    set: Annotated[dict[TagKey, TagValue], Field(max_length=100)] = Field(default_factory=dict)
    unset: Annotated[list[TagKey], Field(max_length=100)] = Field(default_factory=list)


class RemoveVersion(BaseRequest[r.RemoveResult]):
    role: ClassVar[Role] = "admin"
    changes_state: ClassVar[bool] = True

    op: Literal["versions.rm"] = "versions.rm"
    ref: RefStr
    force: bool = False


class AliasSet(BaseRequest[r.AliasEventInfo]):
    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["aliases.set"] = "aliases.set"
    name: ModelName
    alias: AliasName
    version: Ordinal
    reason: Line = ""


class AliasRemove(BaseRequest[r.AliasEventInfo]):
    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["aliases.rm"] = "aliases.rm"
    name: ModelName
    alias: AliasName
    reason: Line = ""


class AliasHistoryRequest(BaseRequest[r.AliasHistory]):
    role: ClassVar[Role] = "viewer"

    op: Literal["aliases.history"] = "aliases.history"
    name: ModelName
    alias: AliasName | None = None
    at: UtcTime | None = None
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000


class Rollback(BaseRequest[r.AliasEventInfo]):
    """Move an alias back to the version it pointed to before its last move."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["aliases.rollback"] = "aliases.rollback"
    name: ModelName
    alias: AliasName
    reason: Line = ""


class Gc(BaseRequest[r.GcResult]):
    role: ClassVar[Role] = "admin"
    changes_state: ClassVar[bool] = True

    op: Literal["store.gc"] = "store.gc"
    dry_run: bool = False
    grace_seconds: Annotated[int, Field(ge=0, le=MAX_GC_GRACE_SECONDS)] | None = None


class Deploy(BaseRequest[r.DeploymentDetail]):
    """Deploy a version. ``NAME@ALIAS`` follows the alias (each move rolls out); ``NAME:N`` is pinned;
    ``NAME`` means the latest version, pinned. With ``wait`` the answer comes when the first instance is
    healthy (or has failed); build and start progress arrive as progress events meanwhile."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["deployments.create"] = "deployments.create"
    ref: RefStr
    name: DeploymentName | None = None
    backend: Backend = "process"
    port: Port | None = None
    env: Annotated[dict[EnvName, EnvValue], Field(max_length=64)] = Field(default_factory=dict)
    options: ContainerOptions = Field(default_factory=ContainerOptions)
    wait: bool = True
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 300.0


class Undeploy(BaseRequest[r.DeploymentDetail]):
    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["deployments.rm"] = "deployments.rm"
    name: DeploymentName


class ListDeployments(BaseRequest[r.DeploymentList]):
    role: ClassVar[Role] = "viewer"

    op: Literal["deployments.list"] = "deployments.list"
    model: str | None = None
    all_hosts: bool = Field(default=False, description="also the deployments other daemons of the cluster run")


class GetDeployment(BaseRequest[r.DeploymentDetail]):
    role: ClassVar[Role] = "viewer"

    op: Literal["deployments.get"] = "deployments.get"
    name: DeploymentName
    events: Annotated[int, Field(ge=0, le=1000)] = 20


class RestartDeployment(BaseRequest[r.DeploymentDetail]):
    """Start the deployment again (a new instance, rolled out like a version change)."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["deployments.restart"] = "deployments.restart"
    name: DeploymentName


class DeploymentTokenStatus(BaseRequest[r.DeploymentToken]):
    """Whether the deployment has a clients' token and whether its endpoint needs one; never the token."""

    role: ClassVar[Role] = "viewer"

    op: Literal["deployments.token"] = "deployments.token"
    name: DeploymentName


class RotateDeploymentToken(BaseRequest[r.DeploymentToken]):
    """Make a new clients' token (the old one stops working at once; the running instances take the new one
    without a restart) and return it, once."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["deployments.token.rotate"] = "deployments.token.rotate"
    name: DeploymentName


class UseDeploymentToken(BaseRequest[r.DeploymentToken]):
    """The clients' token, for ``modeltui predict``/``feedback`` to send (they never print it)."""

    role: ClassVar[Role] = "operator"

    op: Literal["deployments.token.use"] = "deployments.token.use"
    name: DeploymentName


class Logs(BaseRequest[r.LogLines]):
    """The last ``tail`` lines of a deployment's log; with ``follow`` new lines keep arriving as log events
    on this connection until it closes."""

    role: ClassVar[Role] = "viewer"

    op: Literal["deployments.logs"] = "deployments.logs"
    name: DeploymentName
    tail: Annotated[int, Field(ge=0, le=100_000)] = 100
    follow: bool = False


class MetricsRequest(BaseRequest[r.DeploymentMetrics]):
    """Derived metrics of a deployment over the last ``window_seconds`` (60 s to 30 days)."""

    role: ClassVar[Role] = "viewer"

    op: Literal["metrics.get"] = "metrics.get"
    name: DeploymentName
    window_seconds: Annotated[int, Field(ge=60, le=30 * 86_400)] = 3600


class AlertsListRequest(BaseRequest[r.AlertList]):
    """Current alerts (pending and firing), optionally of one deployment, with the latest transitions."""

    role: ClassVar[Role] = "viewer"

    op: Literal["alerts.list"] = "alerts.list"
    deployment: DeploymentName | None = None
    history: Annotated[int, Field(ge=0, le=10_000)] = 0


class AlertRulesRequest(BaseRequest[r.AlertRuleList]):
    """The rules that apply to each deployment (or one), with where each comes from."""

    role: ClassVar[Role] = "viewer"

    op: Literal["alerts.rules"] = "alerts.rules"
    deployment: DeploymentName | None = None


class AlertAdd(BaseRequest[r.AlertRuleList]):
    """Add (or replace, by name) a rule of a deployment. The first edit copies the rules it inherited
    (manifest or built-in) into its own."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

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


class AlertRemove(BaseRequest[r.AlertRuleList]):
    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["alerts.rm"] = "alerts.rm"
    deployment: DeploymentName
    name: RuleName


PolicyKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]
PolicyValue = Annotated[str, Field(max_length=4096)]


class MaintainSet(BaseRequest[r.MaintainPolicyInfo]):
    """Override keys of a model's maintenance policy (``key=value``; see docs/maintenance.md); ``unset``
    returns keys to the manifest's value. The whole resulting policy is checked before anything is stored."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["maintain.set"] = "maintain.set"
    name: ModelName
    set: Annotated[dict[PolicyKey, PolicyValue], Field(max_length=50)] = Field(default_factory=dict)
    unset: Annotated[list[PolicyKey], Field(max_length=50)] = Field(default_factory=list)


class MaintainPolicyRequest(BaseRequest[r.MaintainPolicyInfo]):
    role: ClassVar[Role] = "viewer"

    op: Literal["maintain.policy"] = "maintain.policy"
    name: ModelName


class MaintainRunNow(BaseRequest[r.MaintainRunInfo]):
    """Start a run now (one per model at a time)."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["maintain.run_now"] = "maintain.run_now"
    name: ModelName


class MaintainRuns(BaseRequest[r.MaintainRunList]):
    role: ClassVar[Role] = "viewer"

    op: Literal["maintain.runs"] = "maintain.runs"
    name: ModelName | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 50


class MaintainShow(BaseRequest[r.MaintainRunInfo]):
    role: ClassVar[Role] = "viewer"

    op: Literal["maintain.show"] = "maintain.show"
    run: Ordinal


class MaintainDecide(BaseRequest[r.MaintainRunInfo]):
    """Approve (promote and roll out) or reject a challenger awaiting approval."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["maintain.decide"] = "maintain.decide"
    run: Ordinal
    approve: bool
    reason: Text = ""


class MaintainCancel(BaseRequest[r.MaintainRunInfo]):
    """Stop a run that is running (its worker is killed, no later step starts) or awaiting approval."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["maintain.cancel"] = "maintain.cancel"
    run: Ordinal
    reason: Text = ""


class MaintainPause(BaseRequest[r.MaintainPauseInfo]):
    """Pause (or resume) the maintenance of one model, or of every model (the global switch) without a name.
    A paused model, or any model while the global switch is on, starts no run: scheduled, alert or manual."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["maintain.pause"] = "maintain.pause"
    name: ModelName | None = None
    paused: bool = True


class AuditRequest(BaseRequest[r.AuditList]):
    """Recorded changes and refusals, newest first (``modeltui audit``)."""

    role: ClassVar[Role] = "operator"

    op: Literal["audit.list"] = "audit.list"
    since: UtcTime | None = None
    user: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=10_000)] = 200


class DoctorRequest(BaseRequest[r.DoctorReport]):
    """The daemon's checks of itself: database, disk, directories, and every configured service."""

    role: ClassVar[Role] = "viewer"

    op: Literal["daemon.doctor"] = "daemon.doctor"


class ClusterStatusRequest(BaseRequest[r.ClusterStatus]):
    """The ZooKeeper connection, the daemons and their deployments, the elections' leaders, the cache's age."""

    role: ClassVar[Role] = "viewer"

    op: Literal["cluster.status"] = "cluster.status"


class SignVersion(BaseRequest[r.SignResult]):
    """Record a signature of a version: ``ssh-keygen -Y sign -n modeltui-version`` over
    ``daemon.protocol.signing.statement(model, digest)``. ``digest`` is the content the signer signed: a
    version whose digest differs is refused, so an alias moved meanwhile cannot make it sign something else.
    A signature that does not verify is refused; a good one by a key the allowed-signers file does not name is
    recorded as "not allowed". Signing again with the same key replaces that key's signature."""

    role: ClassVar[Role] = "operator"
    changes_state: ClassVar[bool] = True

    op: Literal["versions.sign"] = "versions.sign"
    ref: RefStr
    digest: Sha256
    signature: Annotated[str, Field(min_length=1, max_length=MAX_SIGNATURE_BYTES)]


class ApproveCode(BaseRequest[r.CodeApprovalInfo]):
    """An admin approves running the code of one version (``python`` flavour, a pickle the scan refused,
    ``trusted = true``): operators may then deploy it and roll it out under ``[policy] run_code = "admin"``.
    ``digest`` (optional) pins the content reviewed: a version whose digest differs is refused."""

    role: ClassVar[Role] = "admin"
    changes_state: ClassVar[bool] = True

    op: Literal["versions.approve_code"] = "versions.approve_code"
    ref: RefStr
    digest: Sha256 | None = None
    reason: Line = ""


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
    | PutObject
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
    | DoctorRequest
    | DeploymentTokenStatus
    | RotateDeploymentToken
    | UseDeploymentToken
    | SignVersion
    | ApproveCode,
    Field(discriminator="op"),
]

REQUEST_ADAPTER: TypeAdapter[Request] = TypeAdapter(Request)


#: every request type, in the order of ``Request``
REQUEST_TYPES: tuple[type[BaseRequest[Any]], ...] = get_args(get_args(Request)[0])
