"""ArtifactStore against the real registry on 127.0.0.1:5000 (Debian's docker-registry 2.8; scripts/services.sh
starts it), plus a tiny local HTTP server for what a well-behaved registry never does (lie about a blob, serve a
huge manifest, redirect). Every test uses its own model name, hence its own repository."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytest

from daemon.cluster.artifacts import (
    CONFIG_TYPE,
    FILE_TYPE,
    MANIFEST_TYPE,
    ArtifactError,
    ArtifactFile,
    ArtifactStore,
    DigestMismatch,
    _parse_manifest,
)
from tests.helpers.prerequisites import need

REGISTRY = os.environ.get("MODELTUI_DOCKER_REGISTRY", "127.0.0.1:5000")
OCI_NAME = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*")


def _registry_up() -> bool:
    try:
        ArtifactStore(REGISTRY, timeout_s=3).ping()
    except ArtifactError:
        return False
    return True


@pytest.fixture
def store() -> ArtifactStore:
    need(_registry_up(), f"no registry answers at http://{REGISTRY}/v2/; run scripts/services.sh as root")
    return ArtifactStore(REGISTRY, timeout_s=10)


class Version:
    """Three files (3 MiB random, empty, executable script) under a fresh model name."""

    def __init__(self) -> None:
        self.model = f"Test.Model_{uuid.uuid4().hex}"
        self.digest = hashlib.sha256(self.model.encode()).hexdigest()
        contents = {
            "weights/model.bin": os.urandom(3 * 1024 * 1024),
            "empty": b"",
            "bin/serve": b"#!/bin/sh\necho hi\n",
        }
        self.blobs = {hashlib.sha256(d).hexdigest(): d for d in contents.values()}
        self.files = [
            ArtifactFile(p, hashlib.sha256(d).hexdigest(), len(d), executable=p == "bin/serve")
            for p, d in contents.items()
        ]
        self.max_read = 0

    def open_file(self, sha256: str) -> BinaryIO:
        version = self

        class Reader(io.BytesIO):
            def read(self, n: int | None = -1) -> bytes:
                version.max_read = max(version.max_read, n if n is not None and n >= 0 else 1 << 62)
                return super().read(n)

        return Reader(self.blobs[sha256])


def _fetch(store: ArtifactStore, model: str, sha256: str, size: int) -> bytes:
    out = bytearray()
    store.fetch(model, sha256, size, out.extend)
    return bytes(out)


def test_push_then_list_and_fetch_every_file(store: ArtifactStore) -> None:
    v = Version()
    ref = store.push(v.model, v.digest, v.files, v.open_file, annotations={"io.modeltui.note": "test"})
    assert ref == f"{REGISTRY}/{store.repository(v.model)}:v-{v.digest}"
    assert store.uploads == 4  # three files and the config blob
    assert 0 < v.max_read <= 1024 * 1024, "files are streamed in chunks of at most 1 MiB"
    assert store.files(v.model, v.digest) == v.files
    for f in v.files:
        data = _fetch(store, v.model, f.sha256, f.size)
        assert data == v.blobs[f.sha256]
        assert hashlib.sha256(data).hexdigest() == f.sha256


def test_push_again_uploads_nothing(store: ArtifactStore) -> None:
    v = Version()
    first = store.push(v.model, v.digest, v.files, v.open_file)
    uploads = store.uploads
    assert store.push(v.model, v.digest, v.files, v.open_file) == first
    assert store.uploads == uploads
    again = ArtifactStore(REGISTRY)  # a fresh store (another host) sees the same blobs
    again.push(v.model, v.digest, v.files, v.open_file)
    assert again.uploads == 0


def test_manifest_uses_the_custom_media_types(store: ArtifactStore) -> None:
    v = Version()
    store.push(v.model, v.digest, v.files, v.open_file)
    manifest = json.loads(_raw(REGISTRY, "GET", f"/v2/{store.repository(v.model)}/manifests/v-{v.digest}")[1])
    assert manifest["mediaType"] == MANIFEST_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    assert {layer["mediaType"] for layer in manifest["layers"]} == {FILE_TYPE}
    assert manifest["annotations"]["io.modeltui.model"] == v.model


def test_wrong_size_is_a_digest_mismatch(store: ArtifactStore) -> None:
    v = Version()
    store.push(v.model, v.digest, v.files, v.open_file)
    big = v.files[0]
    with pytest.raises(DigestMismatch, match="more than the expected"):
        _fetch(store, v.model, big.sha256, big.size - 1)
    with pytest.raises(DigestMismatch, match="expected"):
        _fetch(store, v.model, big.sha256, big.size + 1)


def test_unknown_version_or_blob_is_an_error(store: ArtifactStore) -> None:
    v = Version()
    with pytest.raises(ArtifactError, match=re.escape(REGISTRY) + ".*404") as info:
        store.files(v.model, v.digest)
    assert not isinstance(info.value, DigestMismatch)
    with pytest.raises(ArtifactError, match="404"):
        _fetch(store, v.model, "0" * 64, 1)


def test_unreachable_registry_fails_quickly() -> None:
    s = ArtifactStore("127.0.0.1:1", timeout_s=2)
    start = time.monotonic()
    with pytest.raises(ArtifactError, match=r"127\.0\.0\.1:1"):
        s.ping()
    with pytest.raises(ArtifactError, match=r"127\.0\.0\.1:1"):
        s.files("m", "a" * 64)
    assert time.monotonic() - start < 5


def _raw(
    host: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Accept": MANIFEST_TYPE, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_hostile_manifest_is_refused(store: ArtifactStore) -> None:
    v = Version()
    store.push(v.model, v.digest, v.files, v.open_file)
    repo = store.repository(v.model)
    manifest = json.loads(_raw(REGISTRY, "GET", f"/v2/{repo}/manifests/v-{v.digest}")[1])
    manifest["layers"][1]["annotations"]["org.opencontainers.image.title"] = "../../etc/passwd"
    evil = hashlib.sha256(b"evil").hexdigest()
    status, text = _raw(
        REGISTRY,
        "PUT",
        f"/v2/{repo}/manifests/v-{evil}",
        json.dumps(manifest).encode(),
        {"Content-Type": MANIFEST_TYPE},
    )
    assert status == 201, text
    with pytest.raises(ArtifactError, match=r"unsafe file path.*\.\./\.\./etc/passwd"):
        store.files(v.model, evil)


def _layer(**over: Any) -> dict[str, Any]:
    layer: dict[str, Any] = {
        "mediaType": FILE_TYPE,
        "digest": "sha256:" + "a" * 64,
        "size": 1,
        "annotations": {"org.opencontainers.image.title": "a/b", "io.modeltui.executable": "false"},
    }
    layer.update(over)
    return layer


def _titled(title: Any) -> dict[str, Any]:
    return _layer(annotations={"org.opencontainers.image.title": title})


@pytest.mark.parametrize(
    "layers",
    [
        [_titled("/etc/passwd")],
        [_titled("a/../../b")],
        [_titled("..")],
        [_titled("a\0b")],
        [_titled("")],
        [_titled("./a")],
        [_titled("a//b")],
        [_titled(7)],
        [_layer(annotations={})],
        [_layer(digest="sha512:" + "a" * 128)],
        [_layer(digest="sha256:XYZ")],
        [_layer(size=-1)],
        [_layer(size=True)],
        [_layer(size="1")],
        [_layer(mediaType="application/vnd.oci.image.layer.v1.tar")],
        [_layer(), _layer()],  # the same path twice
        [_layer(annotations={"org.opencontainers.image.title": "x", "io.modeltui.executable": "yes"})],
    ],
)
def test_parse_manifest_refuses_bad_layers(layers: list[dict[str, Any]]) -> None:
    with pytest.raises(ArtifactError):
        _parse_manifest({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "layers": layers})


@pytest.mark.parametrize("manifest", [[], {"schemaVersion": 1, "layers": []}, {"schemaVersion": 2}])
def test_parse_manifest_refuses_bad_shapes(manifest: Any) -> None:
    with pytest.raises(ArtifactError):
        _parse_manifest(manifest)


def test_names_are_valid_and_tags_validated() -> None:
    s = ArtifactStore("127.0.0.1:5000")
    for model in ["Upper.Case_Model-1", "a", "Ünïcode", "x" * 300]:
        assert OCI_NAME.fullmatch(s.repository(model))
    assert s.repository("Model") != s.repository("model")
    assert s.tag("ab" * 32) == f"v-{'ab' * 32}"
    for bad in ["", "ab", "AB" * 32, "g" * 64, "../" + "a" * 61]:
        with pytest.raises(ArtifactError):
            s.tag(bad)


# -- a registry that misbehaves -----------------------------------------------------------------------------


class _Liar(http.server.BaseHTTPRequestHandler):
    """Serves a blob whose bytes do not match the digest, a redirect to it, and an oversized manifest."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if "/blobs/" in self.path and "/real/" not in self.path:
            self.send_response(307)
            self.send_header("Location", "/real/" + self.path.rsplit(":", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/real/"):
            self._send(b"not what you asked for")
        elif "/manifests/" in self.path:
            self._send(b" " * (4 * 1024 * 1024 + 10))
        else:
            self._send(b"{}")

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def liar() -> Iterator[ArtifactStore]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ArtifactStore(f"127.0.0.1:{server.server_address[1]}", timeout_s=5)
    server.shutdown()
    server.server_close()


def test_redirected_blob_with_wrong_content_is_a_digest_mismatch(liar: ArtifactStore) -> None:
    body = b"not what you asked for"
    with pytest.raises(DigestMismatch, match="sha256"):
        _fetch(liar, "m", "b" * 64, len(body))
    assert _fetch(liar, "m", hashlib.sha256(body).hexdigest(), len(body)) == body  # the redirect is followed


def test_oversized_manifest_is_refused(liar: ArtifactStore) -> None:
    with pytest.raises(ArtifactError, match="larger than"):
        liar.files("m", "c" * 64)
