"""Bearer tokens and TLS on a real runtime (``python -m daemon.serving``): 401 without a token, 200 with it
(``curl --cacert`` and ``http.client``), the admin route behind the admin token, rotation without a restart,
plain HTTP to the TLS port refused; and the constant-time comparison as a unit test."""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.deploy.tls import self_signed
from daemon.serving import auth as auth_mod
from daemon.serving.auth import ADMIN, CLIENT, NONE, Auth, sha256_hex
from tests.helpers.paths import REPO
from tests.helpers.prerequisites import need
from tests.helpers.serving import write_python_model
from tests.helpers.waiting import wait_for

CLIENT_TOKEN = "client-token-" + "x" * 30
ADMIN_TOKEN = "admin-token-" + "y" * 30
NEW_TOKEN = "rotated-token-" + "z" * 30
CODE = "def predict(X):\n    return [int(row[0] > 0) for row in X]\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Runtime:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        model = write_python_model(tmp / "model", CODE, inputs='{ name = "x", type = "double" }')
        self.public_port = _free_port()
        self.log = tmp / "serving.err"
        err = open(self.log, "ab")  # noqa: SIM115 - closed once the child inherits it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.serving", "--model-dir", str(model), "--port", "0",
             "--public-port", str(self.public_port)],
            stdout=subprocess.PIPE, stderr=err, env={**os.environ, "PYTHONPATH": str(REPO), **env}, cwd=REPO,
            bufsize=0,  # unbuffered: a buffered readline could take both lines at once and select() then waits
        )  # fmt: skip
        err.close()
        assert self.proc.stdout is not None
        lines = []
        for _ in range(2):  # LISTENING, then SERVING once the model is loaded
            readable, _, _ = select.select([self.proc.stdout], [], [], 60)
            lines.append(self.proc.stdout.readline().decode() if readable else "")
        if not lines[1].startswith("SERVING"):
            self.stop()
            raise RuntimeError(f"no SERVING line ({lines!r}): {self.log.read_text()}")
        self.admin_port = int(lines[0].rsplit(":", 1)[1])
        self.serving_line = lines[1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def call(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls") / "pair", "localhost")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, pair: tuple[Path, Path]) -> Iterator[Runtime]:
    env = {
        "MODELTUI_AUTH": "on",
        "MODELTUI_TOKEN_SHA256": sha256_hex(CLIENT_TOKEN),
        "MODELTUI_ADMIN_TOKEN_SHA256": sha256_hex(ADMIN_TOKEN),
        "MODELTUI_METRICS_OPEN": "0",
        "MODELTUI_TLS_CERT": str(pair[0]),
        "MODELTUI_TLS_KEY": str(pair[1]),
    }
    rt = Runtime(tmp_path_factory.mktemp("auth"), env)
    yield rt
    rt.stop()


def tls_conn(rt: Runtime, cert: Path) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(cert))
    return http.client.HTTPSConnection("localhost", rt.public_port, timeout=30, context=ctx)


def admin_conn(rt: Runtime) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", rt.admin_port, timeout=30)


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("curl"), "curl is needed"
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, text=True, check=False)


ROWS = {"inputs": [[1.5], [-2.0]]}


def test_public_port_needs_the_token(runtime: Runtime, pair: tuple[Path, Path]) -> None:
    assert "(TLS)" in runtime.serving_line
    conn = tls_conn(runtime, pair[0])
    try:
        status, headers, body = call(conn, "POST", "/predict", ROWS)
        assert status == 401, body
        assert headers["www-authenticate"].startswith("Bearer")
        assert body["error_code"] == "UNAUTHENTICATED"
        status, _, body = call(conn, "POST", "/invocations", {"inputs": [[1.0]]}, token="wrong")
        assert status == 401, body
        status, _, body = call(conn, "POST", "/predict", ROWS, token=CLIENT_TOKEN)
        assert status == 200, body
        assert body["predictions"] == [1, 0]
        ids = body["ids"]
        # labels need a credential too
        status, _, body = call(conn, "POST", "/feedback", {"id": ids[0], "label": 1})
        assert status == 401, body
        status, _, body = call(conn, "POST", "/feedback", {"id": ids[0], "label": 1}, token=CLIENT_TOKEN)
        assert (status, body) == (200, {"matched": 1, "unknown": 0})
        # health open by default; metrics closed by this runtime's setting
        assert call(conn, "GET", "/health")[0] == 200
        assert call(conn, "GET", "/metrics")[0] == 401
        assert call(conn, "GET", "/metrics", token=CLIENT_TOKEN)[0] == 200
        # the admin token opens the public routes too (the daemon's own calls); the admin routes stay
        # on the admin port
        assert call(conn, "POST", "/predict", ROWS, token=ADMIN_TOKEN)[0] == 200
        assert call(conn, "GET", "/feedback/rows", token=ADMIN_TOKEN)[0] == 404
    finally:
        conn.close()


def test_curl_with_cacert_and_plain_http_refused(runtime: Runtime, pair: tuple[Path, Path]) -> None:
    url = f"https://localhost:{runtime.public_port}/invocations"
    body = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[3.0]]}})
    base = ["--cacert", str(pair[0]), "-H", "Content-Type: application/json", "-d", body, "-w", "\n%{http_code}"]
    done = curl(*base, url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rsplit("\n", 1)[1] == "401"
    done = curl(*base, "-H", f"Authorization: Bearer {CLIENT_TOKEN}", url)
    assert done.returncode == 0, done.stderr
    text, code = done.stdout.rsplit("\n", 1)
    assert code == "200"
    assert json.loads(text) == {"predictions": [1]}
    # without --cacert the self-signed certificate is not trusted
    assert curl("-H", f"Authorization: Bearer {CLIENT_TOKEN}", "-d", body, url).returncode != 0
    # plain HTTP to the TLS port gets no HTTP answer
    done = curl("-H", f"Authorization: Bearer {CLIENT_TOKEN}", "-d", body, f"http://127.0.0.1:{runtime.public_port}/")
    assert done.returncode != 0 or not done.stdout.startswith("HTTP/")
    conn = http.client.HTTPConnection("127.0.0.1", runtime.public_port, timeout=10)
    try:
        with pytest.raises((http.client.HTTPException, OSError)):
            call(conn, "POST", "/predict", ROWS, token=CLIENT_TOKEN)
    finally:
        conn.close()


def test_admin_port_needs_the_admin_token(runtime: Runtime) -> None:
    conn = admin_conn(runtime)
    try:
        status, headers, body = call(conn, "GET", "/feedback/rows")
        assert status == 401, body
        assert "www-authenticate" in headers
        status, _, body = call(conn, "GET", "/feedback/rows", token=CLIENT_TOKEN)
        assert status == 403, body
        assert body["error_code"] == "PERMISSION_DENIED"
        status, _, body = call(conn, "GET", "/feedback/rows", token=ADMIN_TOKEN)
        assert status == 200, body
        assert body["columns"] == ["x"]
        assert call(conn, "POST", "/admin/token", {"token_sha256": "0" * 64}, token=CLIENT_TOKEN)[0] == 403
        assert call(conn, "POST", "/admin/token", {"token_sha256": "0" * 64})[0] == 401
        assert call(conn, "POST", "/admin/token", {"token_sha256": "nothex"}, token=ADMIN_TOKEN)[0] == 422
        assert call(conn, "GET", "/health")[0] == 200  # the daemon's health check needs nothing
    finally:
        conn.close()


def test_rotation_without_a_restart(runtime: Runtime, pair: tuple[Path, Path]) -> None:
    pid = runtime.proc.pid
    client = tls_conn(runtime, pair[0])
    admin = admin_conn(runtime)
    try:
        assert call(client, "POST", "/predict", ROWS, token=CLIENT_TOKEN)[0] == 200
        status, _, body = call(admin, "POST", "/admin/token", {"token_sha256": sha256_hex(NEW_TOKEN)}, ADMIN_TOKEN)
        assert (status, body) == (200, {"ok": True})
        # the same keep-alive connection: the old token is refused now, the new one works
        assert call(client, "POST", "/predict", ROWS, token=CLIENT_TOKEN)[0] == 401
        assert call(client, "POST", "/predict", ROWS, token=NEW_TOKEN)[0] == 200
    finally:
        call(admin, "POST", "/admin/token", {"token_sha256": sha256_hex(CLIENT_TOKEN)}, ADMIN_TOKEN)
        client.close()
        admin.close()
    assert runtime.proc.poll() is None
    assert runtime.proc.pid == pid


def test_loopback_defaults_stay_open(tmp_path: Path) -> None:
    """Without the settings (a runtime started by hand, or auth off) the routes answer as before; only the
    admin routes need the admin token once its hash is given."""
    rt = Runtime(tmp_path, {"MODELTUI_ADMIN_TOKEN_SHA256": sha256_hex(ADMIN_TOKEN)})
    try:
        conn = http.client.HTTPConnection("127.0.0.1", rt.public_port, timeout=30)
        assert call(conn, "POST", "/predict", ROWS)[0] == 200
        assert call(conn, "GET", "/metrics")[0] == 200
        conn.close()
        admin = admin_conn(rt)
        assert call(admin, "GET", "/feedback/rows")[0] == 401
        assert call(admin, "GET", "/feedback/rows", token=ADMIN_TOKEN)[0] == 200
        admin.close()
    finally:
        rt.stop()


def test_comparison_goes_through_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = auth_mod.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", spy)
    a = Auth(token_sha256=sha256_hex("c"), admin_sha256=sha256_hex("a"), public=True)
    assert a.presented(b"Bearer c") == CLIENT
    assert a.presented(b"bearer a") == ADMIN
    assert a.presented(b"Bearer nope") == NONE
    assert a.presented(b"Basic Yzo=") == NONE
    # both hashes are compared every time (which one matched takes the same work)
    assert len(seen) == 6
    assert all(len(x) == len(y) == 32 for x, y in seen)


def test_environment_is_read_and_removed() -> None:
    env = {"MODELTUI_AUTH": "on", "MODELTUI_TOKEN_SHA256": sha256_hex("t"), "OTHER": "1"}
    a = Auth.from_env(env)
    assert a.public
    assert a.health_open
    assert a.metrics_open
    assert a.admin is None
    assert env == {"OTHER": "1"}
    with pytest.raises(ValueError, match="64 hexadecimal"):
        Auth.from_env({"MODELTUI_TOKEN_SHA256": "abc"})
    with pytest.raises(ValueError, match="on or off"):
        Auth.from_env({"MODELTUI_AUTH": "maybe"})


MLFLOW_PYTHON = Path(os.environ.get("MODELTUI_MLFLOW_PYTHON", REPO / "bench/registry/.venv-mlflow/bin/python"))
MLFLOW_CLIENT = """
import json, sys
import pandas as pd
import requests
import mlflow.pyfunc.scoring_server.client as scoring

port, token = int(sys.argv[1]), sys.argv[2]
session = requests.Session()  # the client calls requests.get/post: a session with the header stands in
session.headers["Authorization"] = f"Bearer {token}"
scoring.requests = session
client = scoring.ScoringServerClient("127.0.0.1", port)
client.wait_server_ready(timeout=30)
df = pd.DataFrame({"x": [1.5, -2.0]})
body = {"dataframe_split": df.to_dict(orient="split")}
print(json.dumps({
    "invoke": client.invoke(df)["predictions"],
    "without": requests.post(f"http://127.0.0.1:{port}/invocations", json=body).status_code,
}))
"""


def test_mlflows_client_works_when_it_sends_the_header(tmp_path: Path) -> None:
    need(MLFLOW_PYTHON.exists(), f"no MLflow venv at {MLFLOW_PYTHON} (bash bench/registry/setup_mlflow.sh makes one)")
    env = {"MODELTUI_AUTH": "on", "MODELTUI_TOKEN_SHA256": sha256_hex(CLIENT_TOKEN)}
    rt = Runtime(tmp_path, env)
    try:
        done = subprocess.run(
            [str(MLFLOW_PYTHON), "-c", MLFLOW_CLIENT, str(rt.public_port), CLIENT_TOKEN],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out == {"invoke": [1, 0], "without": 401}
    finally:
        rt.stop()


def test_a_renewed_certificate_serves_new_connections(tmp_path: Path) -> None:
    """The certificate and key files replaced (a renewal): new connections get the new certificate, so a
    client pinning it connects with no restart; a connection already open keeps working."""
    old_cert, old_key = self_signed(tmp_path / "old", "localhost")
    new_cert, new_key = self_signed(tmp_path / "new", "localhost")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(old_cert, live / "cert.pem")
    shutil.copy(old_key, live / "key.pem")
    env = {"MODELTUI_TLS_CERT": str(live / "cert.pem"), "MODELTUI_TLS_KEY": str(live / "key.pem")}
    rt = Runtime(tmp_path, env)
    try:
        kept = tls_conn(rt, old_cert)
        assert call(kept, "POST", "/predict", ROWS)[0] == 200
        for src, name in ((new_key, "key.pem"), (new_cert, "cert.pem")):
            shutil.copy(src, live / f".{name}")
            os.replace(live / f".{name}", live / name)

        def pinned_new_connects() -> bool:
            conn = tls_conn(rt, new_cert)
            try:
                return call(conn, "POST", "/predict", ROWS)[0] == 200
            except OSError:  # ssl.SSLCertVerificationError while the old certificate is served
                return False
            finally:
                conn.close()

        wait_for(pinned_new_connects, "a client pinning the renewed certificate", 30)
        assert call(kept, "POST", "/predict", ROWS)[0] == 200
        kept.close()
        assert "TLS certificate reloaded" in rt.log.read_text()
    finally:
        rt.stop()
