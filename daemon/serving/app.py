"""The routes: wires the HTTP server, the input schema, the batcher, the metrics and the ledger."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from . import VERSION
from .auth import ADMIN, CLIENT, NONE, Auth
from .batching import Batcher, Outcome
from .drift import FeatureHistograms
from .flavors import Model
from .http import Connection, HttpServer, Request
from .labelled import MAX_PAGE, LabelledRows
from .ledger import Ledger
from .manifest import ServingManifest
from .metrics import Metrics, feedback_key
from .schema import InputError, Params, Rows, Schema

MAX_FEEDBACK_ITEMS = 10_000
INLINE_IDS = 1_000
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    422: "INVALID_PARAMETER_VALUE",
    501: "NOT_IMPLEMENTED",
}
_METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_TEXT = b"text/plain; charset=utf-8"
_UTF8 = (b"utf-8", b"utf8")
_BOM = "\ufeff"
_PARQUET = (b"application/vnd.apache.parquet", b"application/x-parquet")
_ENDPOINTS = {
    b"/predict": "/predict",
    b"/invocations": "/invocations",
    b"/feedback": "/feedback",
    b"/feedback/rows": "/feedback/rows",
    b"/health": "/health",
    b"/health/live": "/health/live",
    b"/ping": "/ping",
    b"/metrics": "/metrics",
    b"/version": "/version",
    b"/admin/token": "/admin/token",
}
_CHALLENGE = b'WWW-Authenticate: Bearer realm="modeltui"\r\n'
Route = Callable[[Connection, Request, bytes], None]
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_dumps_strict = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_ROWS_PARAMS = ("after", "limit")
_loads = json.loads


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    if code is None:
        code = _ERROR_CODES.get(status) or ("INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return _dumps({"error_code": code, "message": message}).encode()


def _refuse(conn: Connection, req: Request, exc: InputError, mlflow: bool) -> None:
    """Answer an input error; on MLflow's endpoint with MLflow's status (a schema error is its 400
    ``INVALID_PARAMETER_VALUE``, where ``/predict`` says 422)."""
    status = 400 if mlflow and exc.status == 422 else exc.status
    code = "INVALID_PARAMETER_VALUE" if exc.status == 422 else None
    conn.respond(req, status, error_body(status, exc.message, code))


def _media_type(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A Content-Type's media type and its parameters, both lower case (values unquoted)."""
    mime, _, rest = raw.partition(b";")
    params = []
    for part in rest.split(b";"):
        name, _, value = part.partition(b"=")
        name = name.strip().lower()
        if name:
            params.append((name, value.strip().strip(b'"').lower()))
    return mime.strip().lower(), params


def _unsupported_charset(params: list[tuple[bytes, bytes]]) -> str | None:
    """The refusal of a declared charset other than UTF-8 (never guessed around), or None."""
    for name, value in params:
        if name == b"charset" and value not in _UTF8:
            shown = value[:40].decode(errors="replace")
            return f"the body is declared charset={shown}; only UTF-8 is accepted (send UTF-8, declare it or nothing)"
    return None


class App:
    def __init__(
        self,
        manifest: ServingManifest,
        *,
        version: str = "local",
        max_batch_size: int = 64,
        max_wait: float = 0.002,
        max_body: int | None = None,
        feedback_inputs: bool = True,
        auth: Auth | None = None,
    ) -> None:
        self.manifest = manifest
        self.auth = auth or Auth()
        a = self.auth
        self._needs: dict[bytes, int] = {  # the least token each route needs (NONE: open)
            b"/predict": CLIENT if a.public else NONE,
            b"/invocations": CLIENT if a.public else NONE,
            b"/feedback": CLIENT if a.public else NONE,
            b"/feedback/rows": ADMIN if a.admin is not None else NONE,
            b"/admin/token": ADMIN,
            b"/health": NONE if a.health_open else CLIENT,
            b"/health/live": NONE if a.health_open else CLIENT,
            b"/ping": NONE if a.health_open else CLIENT,
            b"/metrics": NONE if a.metrics_open else CLIENT,
            b"/version": NONE,
        }
        self.feedback_inputs = feedback_inputs
        """Keep the inputs of recent predictions (labelled rows for retraining); False saves the memory."""
        self.version_label = f"{manifest.name}:{version}"
        self.schema = Schema(manifest.inputs)
        self.mlflow_schema = Schema(manifest.inputs, mlflow=True)
        """``/invocations`` reads inputs by MLflow's rules (extra columns dropped, numeric strings)."""
        self.metrics = Metrics(manifest.name, version, manifest.flavor)
        self.ledger = Ledger()
        self.labelled = LabelledRows()
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.model: Model | None = None
        self.features: FeatureHistograms | None = None
        self.batcher: Batcher | None = None
        self.started = time.time()
        kwargs = {} if max_body is None else {"max_body": max_body}
        self.server = HttpServer(self.handle, error_body, self._record, **kwargs)
        self._version_json = _dumps(self.version_label).encode()
        get: dict[bytes, Route] = {b"GET": self._health}
        self._routes: dict[bytes, dict[bytes, Route]] = {
            b"/predict": {b"POST": self._predict},
            b"/invocations": {b"POST": self._invocations},
            b"/feedback": {b"POST": self._feedback},
            b"/feedback/rows": {b"GET": self._feedback_rows},
            b"/health": get,
            b"/health/live": {b"GET": self._live},
            b"/ping": get,
            b"/metrics": {b"GET": self._metrics},
            b"/version": {b"GET": self._version},
            b"/admin/token": {b"POST": self._admin_token},
        }

    # ---- lifecycle --------------------------------------------------------------------------------

    def set_model(self, model: Model, features: FeatureHistograms | None = None) -> None:
        """Start serving ``model``; ``features`` (from the evaluation data) enables the input-drift metrics."""
        self.model = model
        self.features = features
        self.metrics.features = features
        self.batcher = Batcher(
            asyncio.get_running_loop(),
            self._predict_rows,
            max_batch_size=self.max_batch_size,
            max_wait=self.max_wait,
            observe=self._observe_batch,
        )
        self.metrics.ready = True

    def _predict_rows(self, rows: Rows, params: Params | None) -> list[Any]:
        """In the predict worker thread: one batch through the model, then its inputs into the histograms."""
        assert self.model is not None
        batch = self.schema.to_array(rows)
        features = self.features
        if features is None:
            return self.model.predict(batch, params)
        try:
            values = features.take(batch)
        except (TypeError, ValueError):  # not numbers after all: the model will say so, or succeed uncounted
            values = None
        predictions = self.model.predict(batch, params)
        features.observe(values)  # only batches the model predicted are counted
        return predictions

    def _observe_batch(self, rows: int, seconds: float) -> None:
        self.metrics.batch.observe(rows)
        self.metrics.predict_seconds.observe(seconds)

    def _record(self, req: Request, status: int, seconds: float) -> None:
        self.metrics.request(_ENDPOINTS.get(req.path.split(b"?", 1)[0], "other"), status, seconds)

    # ---- dispatch ---------------------------------------------------------------------------------

    def handle(self, conn: Connection, req: Request, body: bytes) -> None:
        path = req.path
        if b"?" in path:
            path = path.split(b"?", 1)[0]
        route = self._routes.get(path)
        if route is None:
            conn.respond(req, 404, error_body(404, f"no such endpoint: {path[:60].decode(errors='replace')}"))
            return
        fn = route.get(req.method)
        if fn is None:
            allow = ", ".join(m.decode() for m in route)
            method = req.method[:10].decode(errors="replace")
            msg = f"{method} is not allowed here; use {allow}"
            conn.respond(req, 405, error_body(405, msg), extra=b"Allow: %s\r\n" % allow.encode())
            return
        need = self._needs[path]
        # (an admin route on the public port answers 404 whatever the token: it is not served there)
        if need and not (need == ADMIN and conn.public) and not self._authorized(conn, req, need):
            return
        fn(conn, req, body)

    def _authorized(self, conn: Connection, req: Request, need: int) -> bool:
        """True when the request's bearer token opens a route needing ``need``; otherwise answers 401 (no
        or a wrong token, ``WWW-Authenticate: Bearer``) or 403 (the clients' token on an admin route)."""
        got = self.auth.presented(req.authorization) if req.authorization else NONE
        if got >= need:
            return True
        if got == CLIENT:
            conn.respond(req, 403, error_body(403, "this route needs the daemon's admin token, not the clients' token"))
            return False
        if not req.authorization:
            message = "this endpoint needs a bearer token: send Authorization: Bearer TOKEN"
        else:
            message = "the bearer token is not valid for this deployment"
        if need == CLIENT and self.auth.token is None:
            message += " (the deployment has no client token yet: modeltui deploy token NAME --rotate makes one)"
        conn.respond(req, 401, error_body(401, message), extra=_CHALLENGE)
        return False

    def _not_ready(self, conn: Connection, req: Request) -> bool:
        if self.batcher is None:
            body = error_body(503, "the model is still loading; retry in a moment", "LOADING")
            conn.respond(req, 503, body, extra=b"Retry-After: 1\r\n")
            return True
        return False

    @staticmethod
    def _json(conn: Connection, req: Request, body: bytes) -> tuple[bool, Any]:
        """The body as JSON, decoded as UTF-8 (JSON's encoding): a declared charset other than UTF-8 is
        refused with 415, a body that is not UTF-8 with 400; neither is ever guessed."""
        if b";" in req.content_type:
            refused = _unsupported_charset(_media_type(req.content_type)[1])
            if refused is not None:
                conn.respond(req, 415, error_body(415, refused))
                return False, None
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            conn.respond(req, 400, error_body(400, f"the body is not UTF-8 (byte {exc.start}): JSON bodies are UTF-8"))
            return False, None
        if text.startswith(_BOM):
            text = text[1:]
        try:
            return True, _loads(text)
        except RecursionError:
            conn.respond(req, 400, error_body(400, "malformed JSON: nested too deeply"))
        except ValueError as exc:
            conn.respond(req, 400, error_body(400, f"malformed JSON: {str(exc)[:120]}"))
        return False, None

    def _params_for_model(self, params: Params | None) -> Params | None:
        """The params to hand the model: a model whose predict takes none ignores them, as in MLflow."""
        if not params or self.model is None or not self.model.takes_params:
            return None
        return params

    # ---- predictions ------------------------------------------------------------------------------

    def _predict(self, conn: Connection, req: Request, body: bytes) -> None:
        if self._not_ready(conn, req):
            return
        ok, obj = self._json(conn, req, body)
        if not ok:
            return
        try:
            params = self.schema.take_params(obj)
            rows = self.schema.from_predict(obj)
        except InputError as exc:
            _refuse(conn, req, exc, False)
            return
        assert self.batcher is not None
        self.batcher.submit(
            rows, lambda outcome: self._answer(conn, req, outcome, False, rows), self._params_for_model(params)
        )

    def _invocations(self, conn: Connection, req: Request, body: bytes) -> None:
        """MLflow's scoring protocol; docs/deployments.md lists where it differs from MLflow's server."""
        if self._not_ready(conn, req):
            return
        raw = req.content_type
        if raw == b"application/json":  # the common case: no parameters to look at
            mime = raw
        else:
            mime, media_params = _media_type(raw)
            refused = _unsupported_charset(media_params) or _unknown_media_params(media_params)
            if refused is not None:
                conn.respond(req, 415, error_body(415, refused))
                return
        params: Params | None = None
        try:
            if mime == b"application/json":
                ok, obj = self._json(conn, req, body)
                if not ok:
                    return
                params = self.mlflow_schema.take_params(obj)
                rows = self.mlflow_schema.from_mlflow(obj)
            elif mime == b"text/csv":
                rows = self.mlflow_schema.from_csv(body)
            elif mime in _PARQUET:
                rows = self.mlflow_schema.from_parquet(body)
            else:
                shown = mime[:60].decode(errors="replace") or "none"
                message = f"Content-Type must be application/json, text/csv or {_PARQUET[0].decode()}, not {shown}"
                conn.respond(req, 415, error_body(415, message))
                return
        except InputError as exc:
            _refuse(conn, req, exc, True)
            return
        assert self.batcher is not None
        self.batcher.submit(
            rows, lambda outcome: self._answer(conn, req, outcome, True, rows), self._params_for_model(params)
        )

    def _answer(self, conn: Connection, req: Request, outcome: Outcome, mlflow: bool, rows: Rows) -> None:
        if isinstance(outcome, BaseException):
            if isinstance(outcome, ValueError | TypeError):  # MLflow: 400 BAD_REQUEST for what the model refuses
                status, msg = (400 if mlflow else 422), f"the model rejected the input: {str(outcome)[:300]}"
                conn.respond(req, status, error_body(status, msg, "BAD_REQUEST" if mlflow else None))
                return
            status, msg = 500, f"the model failed: {type(outcome).__name__}: {str(outcome)[:300]}"
            conn.respond(req, status, error_body(status, msg))
            return
        labels = self.metrics.class_labels(outcome)
        first = self.ledger.record(labels, rows if self.feedback_inputs else None)
        n = len(outcome)
        try:
            preds = _dumps(outcome)
        except (TypeError, ValueError) as exc:
            conn.respond(req, 500, error_body(500, f"cannot encode the predictions as JSON: {exc}"))
            return
        if mlflow:
            if n <= INLINE_IDS:
                extra = b"X-Prediction-Ids: %s\r\n" % ",".join(self.ledger.ids(first, n)).encode()
            else:
                extra = b"X-Prediction-Id-Range: %s/%d\r\n" % (self.ledger.make_id(first).encode(), n)
            conn.respond(req, 200, b'{"predictions":%s}' % preds.encode(), extra=extra)
        else:
            ids = _dumps(self.ledger.ids(first, n))
            out = b'{"predictions":%s,"ids":%s,"version":%s}' % (preds.encode(), ids.encode(), self._version_json)
            conn.respond(req, 200, out)

    # ---- feedback ---------------------------------------------------------------------------------

    def _feedback(self, conn: Connection, req: Request, body: bytes) -> None:
        ok, obj = self._json(conn, req, body)
        if not ok:
            return
        if type(obj) is dict and "items" in obj and len(obj) == 1:
            items = obj["items"]
            if type(items) is not list:
                conn.respond(req, 400, error_body(400, "items must be a list of {id, label} objects"))
                return
        elif type(obj) is dict and "id" in obj:
            items = [obj]
        else:
            conn.respond(req, 400, error_body(400, 'expected {"id": ..., "label": ...} or {"items": [...]}'))
            return
        if not items or len(items) > MAX_FEEDBACK_ITEMS:
            conn.respond(req, 422, error_body(422, f"send 1 to {MAX_FEEDBACK_ITEMS} feedback items, not {len(items)}"))
            return
        for i, item in enumerate(items):
            if type(item) is not dict or set(item) != {"id", "label"}:
                conn.respond(req, 422, error_body(422, f"item {i}: expected exactly the keys id and label"))
                return
            if type(item["id"]) is not str:
                conn.respond(req, 422, error_body(422, f"item {i}: id must be a string"))
                return
            label = item["label"]
            if label is None or type(label) not in (str, int, float, bool):
                conn.respond(req, 422, error_body(422, f"item {i}: label must be a string, number or boolean"))
                return
        classes = self.model.classes if self.model is not None else None
        if classes is not None:  # a label the classifier cannot predict is a mistake in the feedback, not data
            allowed = {feedback_key(c) for c in classes}
            for i, item in enumerate(items):
                if feedback_key(item["label"]) not in allowed:
                    shown = ", ".join(sorted(str(a) for a in allowed if a is not None)[:20])
                    message = f"item {i}: label {item['label']!r} is not one of the model's classes ({shown})"
                    conn.respond(req, 422, error_body(422, message))
                    return
        m = self.metrics
        labelled = self.labelled
        matched = unknown = 0
        now = time.time()
        for item in items:
            hit, predicted, inputs = self.ledger.claim(item["id"])
            if not hit:
                unknown += 1
                continue
            matched += 1
            if inputs is not None:
                labelled.add(inputs, item["label"], now)
            actual = feedback_key(item["label"])
            if predicted is None or actual is None:
                m.feedback_unlabelled += 1
            else:
                m.feedback[(predicted, m.actual_label(actual))] += 1
        m.feedback_unknown += unknown
        conn.respond(req, 200, _dumps({"matched": matched, "unknown": unknown}).encode())

    def _admin_token(self, conn: Connection, req: Request, body: bytes) -> None:
        """``POST /admin/token`` ``{"token_sha256": HEX}`` (admin port, admin token): the clients' token
        changes now, for every request from here on; connections stay open (rotation without a restart)."""
        if conn.public:
            conn.respond(req, 404, error_body(404, "/admin/token is served on the instance's admin port only"))
            return
        ok, obj = self._json(conn, req, body)
        if not ok:
            return
        value = obj.get("token_sha256") if type(obj) is dict and len(obj) == 1 else None
        if type(value) is not str:
            conn.respond(req, 400, error_body(400, 'expected {"token_sha256": "64 hex characters"}'))
            return
        try:
            self.auth.set_token(value)
        except ValueError as exc:
            conn.respond(req, 422, error_body(422, str(exc)))
            return
        conn.respond(req, 200, b'{"ok":true}')

    def _feedback_rows(self, conn: Connection, req: Request, body: bytes) -> None:
        if conn.public:  # other clients' inputs: only for the daemon, on the instance's own port
            conn.respond(req, 404, error_body(404, "/feedback/rows is served on the instance's admin port only"))
            return
        query = req.path.partition(b"?")[2]
        try:
            after, limit = _rows_query(query)
        except ValueError as exc:
            conn.respond(req, 400, error_body(400, str(exc)))
            return
        buf = self.labelled
        page = buf.page(after, limit)
        head = b'{"instance":%s,"columns":%s,"first":%d,"last":%d,"rows":' % (
            _dumps(self.ledger.prefix).encode(),
            _dumps(self.schema.names).encode(),
            buf.first,
            buf.last,
        )
        try:
            rows = _dumps_strict(buf.as_json(page))
        except ValueError:  # NaN (a missing double) or infinity somewhere: null instead
            rows = _dumps_strict(buf.as_json(page, clean=True))
        conn.respond(req, 200, head + rows.encode() + b"}")

    # ---- health and metrics -----------------------------------------------------------------------

    def _health(self, conn: Connection, req: Request, body: bytes) -> None:
        ready = self.batcher is not None
        info = {
            "status": "ok" if ready else "loading",
            "ready": ready,
            "model": self.manifest.name,
            "version": self.version_label,
            "flavor": self.manifest.flavor,
            "uptime_seconds": round(time.time() - self.started, 3),
        }
        conn.respond(req, 200 if ready else 503, _dumps(info).encode())

    def _live(self, conn: Connection, req: Request, body: bytes) -> None:
        conn.respond(req, 200, b'{"status":"ok"}')

    def _version(self, conn: Connection, req: Request, body: bytes) -> None:
        """MLflow's ``GET /version``: the server's version as bare text (``ScoringServerClient.get_version``)."""
        conn.respond(req, 200, VERSION.encode(), content_type=_TEXT)

    def _metrics(self, conn: Connection, req: Request, body: bytes) -> None:
        conn.respond(req, 200, self.metrics.render(), content_type=_METRICS_TYPE)


def _unknown_media_params(params: list[tuple[bytes, bytes]]) -> str | None:
    """MLflow refuses Content-Type parameters other than charset (MLflow 1's ``format=pandas-split`` among
    them: the format now goes in the body)."""
    unknown = [name.decode(errors="replace")[:40] for name, _ in params if name != b"charset"]
    if not unknown:
        return None
    return (
        f"unrecognized Content-Type parameter {unknown[0]!r}: only charset is accepted; the input format goes "
        "in the body (dataframe_split, dataframe_records, instances or inputs)"
    )


def _rows_query(query: bytes) -> tuple[int, int]:
    """``after`` (default 0) and ``limit`` (default and at most MAX_PAGE) from ``GET /feedback/rows``'s query."""
    values: dict[str, int] = {}
    for part in query.split(b"&"):
        if not part:
            continue
        key_b, eq, raw = part.partition(b"=")
        key = key_b.decode(errors="replace")[:40]
        if key not in _ROWS_PARAMS:
            raise ValueError(f"unknown query parameter {key!r}; use after and limit")
        if key in values:
            raise ValueError(f"query parameter {key} given twice")
        text = raw.decode(errors="replace")
        if not eq or not text.isascii() or not text.isdigit() or len(text) > 18:
            raise ValueError(f"{key} must be a non-negative integer, got {text[:40]!r}")
        values[key] = int(text)
    limit = values.get("limit", MAX_PAGE)
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be from 1 to {MAX_PAGE}, got {limit}")
    return values.get("after", 0), limit
