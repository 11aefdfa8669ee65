"""A version's files as an OCI artifact in a registry, so that another host can fetch them.

One version is one OCI image manifest tagged ``v-<version digest>`` in a repository named after a hash of the
model name (model names allow upper case, OCI repository names do not). Each file is one layer whose blob is
the file's bytes, so identical files are stored once and pushing a version again uploads nothing: every blob
is checked with HEAD first. Layer annotations carry the path and the executable bit; the config blob repeats
the file list as JSON for humans and other tools.

Media types: the config is ``application/vnd.modeltui.version.config.v1+json`` and the layers are
``application/vnd.modeltui.file.v1``. Debian's docker-registry 2.8 accepts both in an OCI image manifest (it
only checks that the referenced blobs exist; tests/cluster/test_artifacts.py pushes exactly this), so no
standard image type is borrowed and nothing mistakes a version for a runnable image.

Standard library only and blocking: callers run it in a thread. TLS (verified against ``[registry] ca_file``
or the system's CAs) and HTTP Basic credentials as ``[registry]`` says (docs/security.md); plain HTTP only to a
loopback registry or where ``allow_plain_http`` allows it, and credentials never in clear to another host.
Credentials go to the registry's own host and scheme only: a redirect elsewhere (a blob in storage) is followed
without them, and a redirect from https to http is refused. docker-registry's htpasswd auth is HTTP Basic; a
registry with token auth (``401`` with ``WWW-Authenticate: Bearer realm=...``) is followed too: the credentials
go to the realm (https, or loopback) for a token of the challenge's scope, and the token to the registry.
Fetched blobs are verified (size and sha256) by the reader, never trusted.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from daemon.settings import RegistryAccess, is_loopback_host

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.modeltui.version.config.v1+json"
FILE_TYPE = "application/vnd.modeltui.file.v1"
TITLE = "org.opencontainers.image.title"
EXECUTABLE = "io.modeltui.executable"
MAX_MANIFEST = 4 * 1024 * 1024
CHUNK = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")


class ArtifactError(Exception):
    """The registry is unreachable, refused a request or answered with data we do not accept."""


class DigestMismatch(ArtifactError):
    """A fetched blob is not what was asked for: the caller must discard what it wrote."""


@dataclass(frozen=True)
class ArtifactFile:
    path: str  # relative path inside the version
    sha256: str  # hex
    size: int
    executable: bool = False


def _hex(value: str, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ArtifactError(f"{what} must be 64 lower-case hex digits, got {value!r}")
    return value


def _safe_path(title: object) -> str:
    """A layer title must name a file inside the version: relative, normalised, no '..', no NUL."""
    if not isinstance(title, str) or not title or "\0" in title or "\\" in title:
        raise ArtifactError(f"unsafe file path in manifest: {title!r}")
    p = PurePosixPath(title)
    if p.is_absolute() or ".." in p.parts or "/".join(p.parts) != title or title == ".":
        raise ArtifactError(f"unsafe file path in manifest: {title!r}")
    return title


class ArtifactStore:
    def __init__(
        self, registry: str, *, timeout_s: float = 30.0, prefix: str = "modeltui", access: RegistryAccess | None = None
    ) -> None:
        self.registry = registry
        self.timeout_s = timeout_s
        self.prefix = prefix
        self.uploads = 0  # blobs actually uploaded (HEAD missed): lets tests and logs see that a push was a no-op
        self.access = access or RegistryAccess(registry)
        self.scheme = "https" if self.access.tls else "http"
        self._ssl: ssl.SSLContext | None = None
        if self.access.tls:
            ca = self.access.ca_file
            try:  # the CA bundle only when given (not added to the system's), else the system's CAs
                self._ssl = ssl.create_default_context(cafile=str(ca) if ca else None)
            except (OSError, ssl.SSLError) as exc:
                raise ArtifactError(f"registry {registry}: cannot load the CA bundle {ca}: {exc}") from None
        self._authorization: str | None = None
        if self.access.credentials:
            if not self.access.tls and not is_loopback_host(registry):
                raise ArtifactError(f"registry {registry}: refusing to send credentials over plain HTTP")
            user, password = self.access.credentials
            self._authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._bearer: str | None = None  # the last token from the registry's token service (token auth)

    # -- names -----------------------------------------------------------------------------------------------

    def repository(self, model: str) -> str:
        """A valid OCI repository name for any model name (hashing keeps case-distinct names distinct)."""
        return f"{self.prefix}/m-{hashlib.sha256(model.encode()).hexdigest()[:20]}"

    def tag(self, version_digest: str) -> str:
        return f"v-{_hex(version_digest, 'version digest')}"

    # -- HTTP --------------------------------------------------------------------------------------------------

    def _where(self, method: str, path: str) -> str:
        return f"registry {self.registry}: {method} {path.split('?')[0]}"

    def _send(
        self,
        method: str,
        target: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        stream: tuple[BinaryIO, int] | None = None,
        auth: str | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request on a fresh connection; ``target`` is a path or an absolute URL (a Location).

        The credentials go only to the registry itself (same scheme, host and port), unless ``auth`` says what to
        send (the token service: "" for nothing); https never becomes http."""
        url = urlsplit(target)
        scheme = url.scheme or self.scheme
        if scheme not in ("http", "https"):
            raise ArtifactError(f"{self._where(method, target)}: unsupported URL scheme {url.scheme!r}")
        if self.scheme == "https" and scheme == "http":
            raise ArtifactError(f"{self._where(method, target)}: refusing a redirect from https to plain http")
        host = url.netloc or self.registry
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        own = scheme == self.scheme and host.lower() == self.registry.lower()
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = self._ssl if own and self._ssl else self._other_ssl()
            conn = http.client.HTTPSConnection(host, timeout=self.timeout_s, context=context)
        else:
            conn = http.client.HTTPConnection(host, timeout=self.timeout_s)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            if auth is None and own:
                auth = f"Bearer {self._bearer}" if self._bearer else self._authorization
            if auth:
                conn.putheader("Authorization", auth)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            length = stream[1] if stream else len(body or b"")
            conn.putheader("Content-Length", str(length))
            conn.endheaders(body)
            if stream:
                fh, left = stream
                while left > 0:
                    chunk = fh.read(min(CHUNK, left))
                    if not chunk:
                        raise ArtifactError(f"{self._where(method, path)}: local file ended {left} bytes early")
                    conn.send(chunk)
                    left -= len(chunk)
            return conn, conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise ArtifactError(
                f"{self._where(method, path)} failed: TLS certificate verification failed "
                f"({exc.verify_message or exc}); set [registry] ca_file to the CA that signed the registry's "
                "certificate"
            ) from None
        except ssl.SSLError as exc:
            conn.close()
            raise ArtifactError(
                f"{self._where(method, path)} failed: TLS error ({exc.reason or exc}); does the registry serve "
                "TLS on this port? ([registry] tls)"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            reason = "timed out" if isinstance(exc, socket.timeout) else str(exc) or type(exc).__name__
            raise ArtifactError(f"{self._where(method, path)} failed: {reason}") from None
        except BaseException:
            conn.close()
            raise

    def _other_ssl(self) -> ssl.SSLContext:
        """For another host (blob storage, a token service): the system's CAs plus ``ca_file``."""
        context = ssl.create_default_context()
        if self.access.ca_file:
            try:
                context.load_verify_locations(cafile=str(self.access.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ArtifactError(f"registry {self.registry}: cannot load {self.access.ca_file}: {exc}") from None
        return context

    def _request(
        self, method: str, target: str, ok: tuple[int, ...], *, retry: bool = True, **kw: Any
    ) -> tuple[int, dict[str, str], bytes]:
        """One complete request: status, headers (lower-case names) and a bounded body; other statuses raise.
        A token-auth challenge is answered once (a streamed body is not resent: a POST before it got the token)."""
        conn, resp = self._send(method, target, **kw)
        try:
            data = resp.read(MAX_MANIFEST + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise ArtifactError(f"{self._where(method, target)}: reading the answer failed: {exc}") from None
        finally:
            conn.close()
        if retry and kw.get("stream") is None and kw.get("auth") is None and self._bearer_challenge(resp):
            return self._request(method, target, ok, retry=False, **kw)
        if resp.status not in ok:
            raise ArtifactError(self._refused(method, target, resp, data))
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def _refused(self, method: str, target: str, resp: http.client.HTTPResponse, data: bytes) -> str:
        """What a refusal says: the registry, the request, the status, the registry's reason and what to do."""
        text = f"{self._where(method, target)}: {resp.status} {resp.reason}{_detail(data)}"
        if resp.status == 401:
            if self._authorization:
                return f"{text}; the registry refused the credentials ([registry] username and password)"
            return f"{text}; the registry wants credentials: set [registry] username and password_file"
        if resp.status == 400 and self.scheme == "http" and b"HTTPS" in data:
            return f"{text}; the registry serves TLS: set [registry] tls = true"
        return text

    def _bearer_challenge(self, resp: http.client.HTTPResponse) -> bool:
        """On a 401 asking for a Bearer token: get one from the realm it names (True: send the request again)."""
        challenge = resp.getheader("WWW-Authenticate", "") if resp.status == 401 else ""
        if not challenge.lower().startswith("bearer "):
            return False
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.get("realm", "")
        url = urlsplit(realm)
        where = f"registry {self.registry}: token service {realm.split('?')[0]!r}"
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ArtifactError(f"{where}: the realm is not an http(s) URL")
        downgrade = url.scheme == "http" and self.scheme == "https"
        if downgrade or (url.scheme == "http" and self._authorization and not is_loopback_host(url.netloc)):
            raise ArtifactError(f"{where}: refusing to ask for a token over plain HTTP")
        query = urlencode([(k, params[k]) for k in ("service", "scope") if params.get(k)])
        target = realm + (("&" if url.query else "?") + query if query else "")
        _, _, data = self._request("GET", target, (200,), auth=self._authorization or "")
        try:
            answer = json.loads(data)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise ArtifactError(f"{where}: the answer holds no usable token")
        self._bearer = token
        return True

    def ping(self) -> None:
        """Raise ArtifactError unless the registry answers the V2 API within the timeout."""
        self._request("GET", "/v2/", (200,))

    # -- push ----------------------------------------------------------------------------------------------------

    def _has_blob(self, repo: str, digest: str) -> bool:
        status, _, _ = self._request("HEAD", f"/v2/{repo}/blobs/sha256:{digest}", (200, 404))
        return status == 200

    def _upload(self, repo: str, digest: str, size: int, body: BinaryIO | bytes) -> None:
        """Monolithic upload: POST opens a session, one PUT streams the bytes and names the digest."""
        _, headers, _ = self._request("POST", f"/v2/{repo}/blobs/uploads/", (202,))
        location = headers.get("location")
        if not location:
            raise ArtifactError(f"{self._where('POST', f'/v2/{repo}/blobs/uploads/')}: no Location in the answer")
        target = location + ("&" if "?" in location else "?") + "digest=" + quote(f"sha256:{digest}")
        octet = {"Content-Type": "application/octet-stream"}
        if isinstance(body, bytes):
            self._request("PUT", target, (201,), headers=octet, body=body)
        else:
            self._request("PUT", target, (201,), headers=octet, stream=(body, size))
        self.uploads += 1

    def push(
        self,
        model: str,
        version_digest: str,
        files: list[ArtifactFile],
        open_file: Callable[[str], BinaryIO],
        *,
        annotations: dict[str, str] | None = None,
    ) -> str:
        """Upload the blobs the registry lacks, then the manifest; returns ``registry/repo:tag``."""
        repo, tag = self.repository(model), self.tag(version_digest)
        seen: set[str] = set()
        for f in files:
            _hex(f.sha256, f"sha256 of {f.path}")
            _safe_path(f.path)
            if f.sha256 in seen or self._has_blob(repo, f.sha256):
                seen.add(f.sha256)
                continue
            with open_file(f.sha256) as fh:
                self._upload(repo, f.sha256, f.size, fh)
            seen.add(f.sha256)
        config = json.dumps(
            {
                "model": model,
                "digest": version_digest,
                "files": [
                    {"path": f.path, "sha256": f.sha256, "size": f.size, "executable": f.executable} for f in files
                ],
            },
            sort_keys=True,
        ).encode()
        config_digest = hashlib.sha256(config).hexdigest()
        if not self._has_blob(repo, config_digest):
            self._upload(repo, config_digest, len(config), config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": f"sha256:{config_digest}", "size": len(config)},
            "layers": [
                {
                    "mediaType": FILE_TYPE,
                    "digest": f"sha256:{f.sha256}",
                    "size": f.size,
                    "annotations": {TITLE: f.path, EXECUTABLE: "true" if f.executable else "false"},
                }
                for f in files
            ],
            "annotations": {**(annotations or {}), "io.modeltui.model": model, "io.modeltui.version": version_digest},
        }
        body = json.dumps(manifest, sort_keys=True).encode()
        self._request("PUT", f"/v2/{repo}/manifests/{tag}", (201,), headers={"Content-Type": MANIFEST_TYPE}, body=body)
        return f"{self.registry}/{repo}:{tag}"

    # -- pull ----------------------------------------------------------------------------------------------------

    def files(self, model: str, version_digest: str) -> list[ArtifactFile]:
        """The version's files as its manifest lists them, refusing anything malformed or path-escaping."""
        repo, tag = self.repository(model), self.tag(version_digest)
        where = self._where("GET", f"/v2/{repo}/manifests/{tag}")
        _, _, data = self._request("GET", f"/v2/{repo}/manifests/{tag}", (200,), headers={"Accept": MANIFEST_TYPE})
        if len(data) > MAX_MANIFEST:
            raise ArtifactError(f"{where}: manifest larger than {MAX_MANIFEST} bytes")
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            raise ArtifactError(f"{where}: manifest is not JSON ({exc})") from None
        try:
            return _parse_manifest(manifest)
        except ArtifactError as exc:
            raise ArtifactError(f"{where}: {exc}") from None

    def fetch(self, model: str, sha256: str, size: int, write: Callable[[bytes], None]) -> None:
        """Stream one blob to ``write``, verifying size and digest; DigestMismatch means discard what was written."""
        _hex(sha256, "sha256")
        target = f"/v2/{self.repository(model)}/blobs/sha256:{sha256}"
        challenged = False
        for _ in range(5):  # the registry may redirect to its storage backend (or ask for a token once)
            conn, resp = self._send("GET", target)
            try:
                if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                    target = resp.getheader("Location", "")
                    continue
                if not challenged and self._bearer_challenge(resp):
                    challenged = True
                    continue
                if resp.status != 200:
                    try:
                        data = resp.read(4096)
                    except (OSError, http.client.HTTPException):
                        data = b""
                    raise ArtifactError(self._refused("GET", target, resp, data))
                self._stream(resp, target, sha256, size, write)
                return
            finally:
                conn.close()
        raise ArtifactError(f"{self._where('GET', target)}: too many redirects")

    def _stream(
        self, resp: http.client.HTTPResponse, target: str, sha256: str, size: int, write: Callable[[bytes], None]
    ) -> None:
        h, count = hashlib.sha256(), 0
        while True:
            try:
                chunk = resp.read(min(CHUNK, size - count + 1))
            except (OSError, http.client.HTTPException) as exc:
                raise ArtifactError(f"{self._where('GET', target)}: reading the blob failed: {exc}") from None
            if not chunk:
                break
            count += len(chunk)
            if count > size:
                raise DigestMismatch(f"{self._where('GET', target)}: more than the expected {size} bytes")
            h.update(chunk)
            write(chunk)
        if count != size:
            raise DigestMismatch(f"{self._where('GET', target)}: got {count} bytes, expected {size}")
        if h.hexdigest() != sha256:
            raise DigestMismatch(f"{self._where('GET', target)}: content has sha256 {h.hexdigest()}, expected {sha256}")


def _detail(data: bytes) -> str:
    """The registry's own error message, when it sent one (its JSON ``errors`` list), shortened."""
    try:
        errors = json.loads(data)["errors"]
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
    return f" ({text[:300]})" if text else ""


def _parse_manifest(manifest: Any) -> list[ArtifactFile]:
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise ArtifactError("not a schemaVersion 2 manifest")
    if manifest.get("mediaType", MANIFEST_TYPE) != MANIFEST_TYPE:
        raise ArtifactError(f"unexpected manifest mediaType {manifest.get('mediaType')!r}")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise ArtifactError("manifest has no layers list")
    out: list[ArtifactFile] = []
    paths: set[str] = set()
    for layer in layers:
        if not isinstance(layer, dict) or layer.get("mediaType") != FILE_TYPE:
            raise ArtifactError(f"layer is not a {FILE_TYPE}: {str(layer)[:200]}")
        digest, size, notes = layer.get("digest"), layer.get("size"), layer.get("annotations")
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise ArtifactError(f"layer digest is not sha256: {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ArtifactError(f"layer size is not a non-negative integer: {size!r}")
        if not isinstance(notes, dict):
            raise ArtifactError("layer has no annotations")
        path = _safe_path(notes.get(TITLE))
        if path in paths:
            raise ArtifactError(f"duplicate file path in manifest: {path!r}")
        paths.add(path)
        executable = notes.get(EXECUTABLE, "false")
        if executable not in ("true", "false"):
            raise ArtifactError(f"layer {EXECUTABLE} must be 'true' or 'false', got {executable!r}")
        out.append(ArtifactFile(path, _hex(digest[7:], "layer digest"), size, executable == "true"))
    return out
