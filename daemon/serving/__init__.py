"""The serving runtime: one model version behind a small, fast HTTP/1.1 server.

Run it with::

    python -m daemon.serving --model-dir DIR [--host 127.0.0.1] [--port 0]
                             [--max-batch-size 64] [--max-wait-ms 2] [--model-version N]

With ``--port 0`` the kernel picks a free port. The first line on stdout is always ``LISTENING host:port``,
printed as soon as the socket accepts connections; the model is loaded after that (``GET /health`` answers
503 until it is ready, 200 afterwards), so a supervisor reads one line, then polls ``/health``. A model that
cannot be loaded ends the process with exit status 3 and the reason on stderr; a bad manifest or bad
arguments end it with status 2 before anything listens.

``--public-port P`` (used by the deployment backends) additionally binds ``P`` with SO_REUSEPORT once the
model is loaded and prints ``SERVING host:P``: instances of one deployment share the port, so a rollout
starts the new version beside the old, and the kernel sends it traffic only after it is ready (exit status
4 when ``P`` is taken by something else). ``--port`` stays the instance's own admin port, which listens on
``--admin-host`` (default: ``--host``) while ``P`` listens on ``--host``.

This package imports nothing else from ``daemon`` (it is copied into Docker images on its own) and needs
only the standard library and numpy. scikit-learn/skops are imported by the ``sklearn`` flavor and
onnxruntime by the ``onnx`` flavor, lazily.

Manifest (``DIR/modeltui.toml``): ``name``, ``flavor`` (``sklearn`` | ``onnx`` | ``python``),
``model_file``, ``trusted`` (default false) and ``[signature]`` ``inputs``/``outputs``, lists of
``{name, type}`` with type ``double | float | long | integer | boolean | string``. Other keys are ignored.

Flavors:

* ``sklearn``: ``model_file`` is a ``.skops`` file, loaded with ``skops.io``. It is loaded only if every
  type skops does not trust by default is allowed: ``trusted = ["sklearn.tree._tree.Tree", ...]`` allows
  exactly the listed types (a reviewed allowlist; tree models need it), ``trusted = true`` allows
  whatever the file holds. ``.joblib``/``.pkl``/``.pickle`` files (arbitrary code on load) only with
  ``trusted = true``. The runtime calls ``model.predict(X)``.
* ``onnx``: ``model_file`` is an ``.onnx`` file run by onnxruntime on the CPU; ``X`` (as float32 unless
  the signature is all long/integer) feeds the model's first input and the first output is returned.
* ``python``: ``model_file = "FILE.py:FUNCTION"``, e.g. ``"predict.py:predict"``; FILE is relative to the
  model directory (which is put first on ``sys.path`` so the module can import its neighbours) and is
  imported once at load time. ``FUNCTION(X)`` is called with a batch and returns one prediction per row
  (a list or a numpy array; rows of a 2-D result become lists). Python models run arbitrary code by
  design: deploy only directories you trust.

Every flavor gets the same batch ``X``: a 2-D numpy array, rows × signature inputs in signature order, of
dtype float64 when every input is double/float (or a mix of double/float and long/integer), int64 when all
are long/integer, bool when all are boolean, and object otherwise. Missing doubles (JSON ``null``, empty
CSV cells) are NaN.

HTTP API (bodies with ``Content-Length`` or ``Transfer-Encoding: chunked``; JSON bodies are UTF-8: a
declared ``charset`` other than UTF-8 gets 415, a body that is not UTF-8 gets 400; a head line ending in
a bare LF or CR gets 400 at once). While the model loads, ``/predict`` and ``/invocations`` answer 503
with error_code ``LOADING`` and ``Retry-After: 1``:

* ``POST /predict`` ``{"inputs": [[...], ...]}`` (rows in signature order), ``{"inputs": [{col: v}, ...]}``
  or ``{"inputs": {col: [v, ...]}}``, optionally with ``"params": {...}``
  → ``{"predictions": [...], "ids": [...], "version": "name:N"}``. Columns must match the signature exactly.
* ``POST /invocations`` (MLflow's scoring protocol, read by MLflow's rules: docs/deployments.md lists the
  differences): ``application/json`` with exactly one of ``dataframe_split`` / ``dataframe_records`` /
  ``instances`` / ``inputs`` and optionally ``params``, ``text/csv`` with a header row, or Parquet
  (``application/vnd.apache.parquet``, when pyarrow is installed; 415 naming pyarrow otherwise)
  → ``{"predictions": [...]}``. Columns the signature does not name are dropped, numbers written as strings
  are converted, and input errors are 400 (``BAD_REQUEST`` for the shape, ``INVALID_PARAMETER_VALUE`` for
  the schema), as MLflow answers them. ``params`` go to a ``python`` model whose function has a ``params``
  argument (``FUNCTION(X, params=...)``; such a request is a batch of its own) and are ignored by other
  models. The prediction ids travel in the ``X-Prediction-Ids`` header
  (comma-separated) for up to 1000 rows; larger requests get ``X-Prediction-Id-Range: FIRST/COUNT``
  instead (ids are consecutive: the hex counter in the last 12 characters increases by one per row).
* ``POST /feedback`` ``{"id": ID, "label": L}`` or ``{"items": [{"id": ID, "label": L}, ...]}`` →
  ``{"matched": m, "unknown": u}``. The runtime remembers the class predicted for the last 100,000 ids;
  each id takes one label; an id it does not remember (older, from another process, or already labelled)
  counts as unknown. It also keeps the input rows (as the schema converted them) of the same ids (about
  50 MiB more for 100,000 rows of 30 doubles), so a matched item adds a labelled row ``(seq, time,
  inputs, label)`` to a buffer of the last 50,000 (oldest dropped): ``seq`` counts from 1 per process,
  ``time`` is the unix time the label arrived, ``label`` is the label as sent.
* ``GET /feedback/rows?after=SEQ&limit=N`` (``after`` default 0; ``limit`` 1 to 10,000, default 10,000)
  → ``{"instance": PREFIX, "columns": [input names], "first": F, "last": L, "rows": [[seq, time,
  [inputs...], label], ...]}``: the labelled rows with ``seq > after``, oldest first, at most ``N``.
  ``instance`` is the 16-hex-character id prefix of this process (a new one means the sequence restarted),
  ``columns`` the signature's input names in order, ``first`` the oldest seq still held (the next seq when
  none is; rows before it were dropped), ``last`` the last seq assigned (0 before any). Missing values
  (NaN) are ``null``. An unknown or repeated parameter, or a value that is not such an integer, gets 400.
  Answered while the model loads too (rows come only from feedback, so none yet). Other clients' inputs:
  served on the instance's own (admin) port only; the shared ``--public-port`` answers 404.
* ``GET /health`` → 200 ``{"status": "ok", "ready": true, ...}`` once the model is loaded, else 503;
  ``GET /health/live`` (and MLflow's ``GET /ping`` once ready) → 200.
* ``GET /metrics`` → Prometheus text format 0.0.4 (below).
* ``GET /version`` → the runtime's version as bare text (MLflow's ``ScoringServerClient.get_version``).

Authentication (``auth.py``; the daemon sets it through the environment, never argv, and the runtime removes
these variables before loading the model): ``MODELTUI_TOKEN_SHA256`` / ``MODELTUI_ADMIN_TOKEN_SHA256`` are
the SHA-256 hashes of the clients' and the admin bearer tokens, compared with ``hmac.compare_digest``;
``MODELTUI_AUTH=on`` makes ``/predict``, ``/invocations`` and ``/feedback`` need a token;
``MODELTUI_HEALTH_OPEN=0`` / ``MODELTUI_METRICS_OPEN=0`` close ``/health`` (``/ping``, ``/health/live``) and
``/metrics``. The admin routes (``GET /feedback/rows``, ``POST /admin/token`` ``{"token_sha256": HEX}``, which
swaps the clients' hash at once) need the admin token whenever its hash is set. No or a wrong token: 401
with ``WWW-Authenticate: Bearer``; the clients' token on an admin route: 403. ``MODELTUI_TLS_CERT`` /
``MODELTUI_TLS_KEY`` (PEM files) make the public port HTTPS (``SERVING host:P (TLS)``). Without any of
these the runtime answers as it always did.

Metrics (labels are bounded: at most 50 classes per label, then ``other``; at most 100 features):

* ``modeltui_model_info{name,version,flavor}``, ``modeltui_model_ready`` (gauges);
  ``modeltui_requests_total{endpoint,status}``; ``modeltui_request_duration_seconds{endpoint}``,
  ``modeltui_batch_size`` and ``modeltui_predict_duration_seconds`` (histograms);
  ``modeltui_predictions_total{class}``; ``modeltui_feedback_total{predicted,actual}`` (the confusion
  matrix), ``modeltui_feedback_unknown_total``, ``modeltui_feedback_unclassified_total``.
* Input drift, only when the manifest names evaluation data (``[evaluation] data = "FILE.csv"``, a CSV with
  a header, in the model directory) and the file is usable. At load time, for each numeric input
  (double/float/long/integer; the first 100 in signature order) that is a column of the file, the bucket
  bounds are the distinct deciles of that column (``np.quantile`` at 0.1 … 0.9 over its finite values;
  empty, ``NaN``, ``null`` and non-numeric cells are left out; the first 100,000 rows are read). The
  reference is derived from the version's immutable files, so every instance of a version has the same.

  - ``modeltui_feature_value{feature}`` (histogram): the live values of every predicted row, ``le`` = the
    bounds and ``+Inf``, with ``_sum`` and ``_count`` (non-missing values). Counted per batch with numpy
    in the predict thread after a successful predict: rows the model rejected are not counted.
  - ``modeltui_feature_reference_ratio{feature,bound}`` (gauge): the share of the evaluation data's values
    at or below each bound (``bound`` takes exactly the histogram's ``le`` values, ``+Inf`` → 1; the label
    is not called ``le`` because Prometheus reserves ``le`` for histograms). PSI / Kolmogorov–Smirnov
    drift compare the histogram's bucket shares with it.
  - ``modeltui_feature_missing_total{feature}`` (counter): live values that were missing (null/NaN).

  Without evaluation data (or when it cannot be read: a line on stderr says why) none of these three
  families is exposed; everything else is unchanged.

Input errors on ``/predict`` get 400 (malformed JSON, wrong shape) or 422 (wrong column or value type, too
many rows) with ``{"error_code": "...", "message": "..."}`` naming the row and column; ``/invocations``
answers the same errors with MLflow's 400.
"""

from __future__ import annotations

__all__ = ["VERSION"]

#: The runtime's version (``GET /version``); the same as the daemon's (a test keeps them equal). Kept here
#: because Docker images hold this package without the rest of ``daemon``.
VERSION = "0.1.0"
