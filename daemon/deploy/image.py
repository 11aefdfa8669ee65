"""Images for Docker deployments: the generated Dockerfile, the offline wheelhouse, build and push.

Builds need no network: the model's requirements (plus numpy, which the runtime needs) are fetched as
wheels on the host with the daemon's own pip (``pip wheel --only-binary=:all:``: a requirement published
only as an sdist is refused, since building it would run its setup code as the daemon), cached by the
requirement list, copied into the build context and installed in the image with ``pip install --no-index``.
That is right for air-gapped servers, and needed where a container does not trust the host's certificates.
The image's Python minor version must match the host's (the wheels are built for it): Debian 12 gives 3.11
on both sides.

The image holds only the serving runtime (``daemon/serving``, which imports nothing else from ``daemon``)
and the model's files, runs as an unprivileged uid and has no setuid or setgid file (:data:`STRIP_SETID`).
The synchronous functions here take a docker-py ``APIClient`` and are meant to run in a worker thread.

Images are removed by the image policy (``[docker] keep_images``): per model, the images of the newest
``keep_images`` versions stay, and every image a deployment uses; :func:`images_to_remove` decides.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tomllib
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The uid:gid containers run as: no user in the base image, no file on the host has it.
RUN_AS = "10001:10001"
VENV = "/opt/modeltui/venv"
MODEL_DIR = "/model"
#: Removes every setuid/setgid bit (su, mount, passwd… of the base image, setgid directories like /var/mail,
#: anything in the venv): with them gone a process in the container has no file to gain privileges through,
#: even without no-new-privileges. The runtime and model files are copied afterwards with modes 0644/0755.
STRIP_SETID = "find / -xdev -perm /6000 -exec chmod a-s {} +"
#: A plain requirement specifier: a name, extras, version clauses, markers. No options ("-r", "--index-url"),
#: no URLs or paths: the wheelhouse is built from the daemon's configured index only.
_REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._, -]*\])?[A-Za-z0-9 <>=!~*.,;()'\"_+-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
#: pip's words for a requirement with no wheel it may use (``--only-binary=:all:``: an sdist is never built).
_NO_WHEEL_RE = re.compile(r"No matching distribution found for (\S+)")
#: A runaway wheel build must not hold a deployment forever.
WHEEL_TIMEOUT_SECONDS = 1800.0


class ImageError(Exception):
    """The image cannot be built or pushed; the message says why (the backend wraps it in a BackendError)."""


def image_repository(registry: str, model: str) -> str:
    """``REGISTRY/modeltui/MODEL`` (``modeltui/MODEL`` without a registry), lowercase as Docker wants."""
    repo = f"modeltui/{model}".lower()
    return f"{registry.rstrip('/')}/{repo}" if registry else repo


def image_tag(registry: str, model: str, version: int, digest: str) -> str:
    """One tag per (model, version, content): a re-pushed version with other bytes never reuses an image."""
    return f"{image_repository(registry, model)}:{version}-{digest[:12].lower()}"


def tag_version(tag: str) -> int | None:
    """The version in a tag :func:`image_tag` made (``REPO:VERSION-DIGEST12``); None for any other tag."""
    _, colon, suffix = tag.rpartition(":")
    number, dash, digest = suffix.partition("-")
    if colon and dash and number.isdigit() and len(digest) == 12 and "/" not in suffix:
        return int(number)
    return None


@dataclass(frozen=True)
class BuiltImage:
    """One tag of an image this daemon built (or the id of such an image left untagged by a rebuild)."""

    ref: str
    image_id: str
    model: str
    version: int | None
    """None: untagged, so nothing can start it by name."""
    created: int


@dataclass
class Pruned:
    """What the image policy removed (or, in a dry run, would remove)."""

    removed: list[str] = field(default_factory=list)
    bytes: int = 0
    """Disk space freed: the layers no other image shares, of images whose last tag went."""


def built_images(listing: Iterable[dict[str, Any]]) -> Iterator[BuiltImage]:
    """This daemon's images from the engine's image list (filtered by its owner label): one per tag of ours;
    tags not in :func:`image_tag`'s form (someone's own ``docker tag``) are left alone."""
    for item in listing:
        model = (item.get("Labels") or {}).get("modeltui.model")
        if not model:
            continue
        image_id, created = str(item["Id"]), int(item.get("Created") or 0)
        tags = [t for t in item.get("RepoTags") or [] if t != "<none>:<none>"]
        if not tags:
            yield BuiltImage(image_id, image_id, model, None, created)
        for tag in tags:
            version = tag_version(tag)
            if version is not None:
                yield BuiltImage(tag, image_id, model, version, created)


def images_to_remove(images: Iterable[BuiltImage], *, keep: int, in_use: set[tuple[str, int]]) -> list[BuiltImage]:
    """Per model, the images of the ``keep`` newest versions stay, and those of every (model, version) in
    ``in_use`` (deployed, starting or being rolled out); the others go, oldest first."""
    by_model: dict[str, list[BuiltImage]] = {}
    for image in images:
        by_model.setdefault(image.model, []).append(image)
    doomed: list[BuiltImage] = []
    for model, found in by_model.items():
        newest = sorted({i.version for i in found if i.version is not None}, reverse=True)[:keep]
        doomed += [i for i in found if i.version not in newest and (model, i.version or 0) not in in_use]
    return sorted(doomed, key=lambda i: (i.model, i.version or 0, i.created))


def check_requirement(req: str) -> str:
    """A requirement must be a plain specifier; pip options or URLs in a manifest would steer the host's pip."""
    req = req.strip()
    if not req or len(req) > 200 or "://" in req or "@" in req or not _REQUIREMENT_RE.fullmatch(req):
        raise ImageError(f"requirement {req[:60]!r} is not a plain package specifier (name, extras, versions)")
    return req


def read_requirements(model_dir: Path) -> list[str]:
    """The manifest's ``requirements`` plus numpy (the runtime's only dependency) when not listed."""
    try:
        with (model_dir / "modeltui.toml").open("rb") as f:
            manifest = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImageError(f"cannot read {model_dir / 'modeltui.toml'}: {exc}") from None
    raw = manifest.get("requirements", [])
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise ImageError("modeltui.toml: requirements must be a list of strings")
    reqs = [check_requirement(r) for r in raw]
    names = {_normalize(r) for r in reqs}
    if "numpy" not in names:
        reqs.append("numpy")
    return reqs


def _normalize(req: str) -> str:
    m = _NAME_RE.match(req)
    return re.sub(r"[-_.]+", "-", m.group(0)).lower() if m else req


def wheelhouse_key(requirements: list[str]) -> str:
    """Wheels depend on the requirement list and the interpreter they are built for."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    blob = json.dumps({"python": tag, "requirements": sorted(requirements)})
    return f"{tag}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


#: One lock per wheelhouse directory and event loop (an asyncio lock belongs to one loop).
_wheel_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


async def ensure_wheelhouse(root: Path, requirements: list[str], progress: Callable[[str], None]) -> Path:
    """A directory of wheels for ``requirements`` (built once per requirement list, then reused).

    Built into a temporary directory and renamed when complete, so a crash or a failure never leaves a
    half wheelhouse that a later build would trust."""
    key = wheelhouse_key(requirements)
    dest = root / key
    locks = _wheel_locks.setdefault(asyncio.get_running_loop(), {})
    lock = locks.setdefault(str(dest), asyncio.Lock())
    async with lock:
        if (dest / "requirements.txt").is_file():
            progress(f"wheelhouse {key}: cached")
            return dest
        tmp = root / f".{key}.tmp-{os.getpid()}"
        await asyncio.to_thread(_fresh_dir, tmp)
        progress(f"wheelhouse {key}: pip wheel {' '.join(requirements)}")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input",
            "--only-binary=:all:", "-w", str(tmp), *requirements,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        tail: list[str] = []
        try:
            async with asyncio.timeout(WHEEL_TIMEOUT_SECONDS):
                async for raw in proc.stdout:
                    line = raw.decode(errors="replace").rstrip()
                    if line:
                        tail = [*tail[-19:], line]
                        progress(line)
                status = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if status != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            said = [line for line in tail if _NO_WHEEL_RE.search(line)]
            if said:  # pip says so for a missing wheel, a misspelt name or version, and an unreachable index alike
                missing = [m.group(1) for m in map(_NO_WHEEL_RE.search, said) if m]
                raise ImageError(
                    f"no wheel of {', '.join(dict.fromkeys(missing))} for this Python on the package index, or the "
                    f"index is unreachable (pip: {said[-1].strip()!r}): the daemon installs wheels only (building an "
                    "sdist would run its setup code as the daemon); check the requirement's name and version and "
                    "that the index answers, publish a wheel to the index, or drop the requirement"
                )
            raise ImageError(f"building wheels for {requirements} failed (pip exit {status}): " + " | ".join(tail[-5:]))
        (tmp / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        return dest


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def dockerfile(base_image: str, labels: dict[str, str]) -> str:
    """The generated Dockerfile. The wheels are installed in a first stage, so they are not in the image;
    layers go from the most to the least shared (venv, runtime, model), so versions with the same
    requirements reuse every layer but the model's."""
    label_lines = "".join(f"LABEL {json.dumps(k)}={json.dumps(v)}\n" for k, v in sorted(labels.items()))
    # 401: /health needs a token ([serving] health_open = false) and the image has none; the runtime answers
    # on its admin port, which is all this check can know (the daemon's own check sends the admin token).
    probe = (
        "import os,sys,urllib.error,urllib.request\n"
        "try:\n"
        " urllib.request.urlopen('http://%s:%s/health' % (os.environ.get('MODELTUI_ADMIN_HOST', '127.0.0.1'),"
        " os.environ['MODELTUI_ADMIN_PORT']), timeout=3)\n"
        "except urllib.error.HTTPError as e:\n"
        " sys.exit(e.code != 401)\n"
    )
    healthcheck = json.dumps([f"{VENV}/bin/python", "-c", probe])
    entrypoint = json.dumps([f"{VENV}/bin/python", "-m", "daemon.serving", "--model-dir", MODEL_DIR])
    return f"""\
FROM {base_image} AS deps
RUN python3 -m venv {VENV}
COPY wheels/ /wheels/
RUN {VENV}/bin/pip install --no-index --find-links /wheels --no-cache-dir --disable-pip-version-check \\
    -r /wheels/requirements.txt

FROM {base_image}
ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
COPY --from=deps {VENV} {VENV}
RUN {STRIP_SETID}
COPY runtime/ /app/
COPY model/ {MODEL_DIR}/
ENV PYTHONPATH=/app
WORKDIR /app
USER {RUN_AS}
HEALTHCHECK --interval=5s --timeout=4s --start-period=120s --retries=3 CMD {healthcheck}
{label_lines}ENTRYPOINT {entrypoint}
"""


def _copy_readable(src: Path, dest: Path) -> None:
    """Copy a tree with world-readable modes: the container's uid owns none of these files."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if "__pycache__" in rel.parts or path.is_symlink():
            continue
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o755)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            target.chmod(0o644)


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def prepare_context(ctx: Path, *, model_dir: Path, wheels: Path, dockerfile_text: str) -> None:
    """Lay out the build context: Dockerfile, wheels/, runtime/daemon/serving, model/."""
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile_text)
    (ctx / "wheels").mkdir()
    for whl in wheels.iterdir():
        if whl.is_file():
            _link_or_copy(whl, ctx / "wheels" / whl.name)
    serving = Path(__file__).resolve().parent.parent / "serving"
    runtime = ctx / "runtime" / "daemon"
    _copy_readable(serving, runtime / "serving")
    (runtime / "__init__.py").write_text('"""Only the serving runtime is in this image."""\n')
    (runtime / "__init__.py").chmod(0o644)
    runtime.chmod(0o755)
    (ctx / "runtime").chmod(0o755)
    _copy_readable(model_dir, ctx / "model")
    (ctx / "model").mkdir(exist_ok=True)
    (ctx / "model").chmod(0o755)


def build_image(api: Any, ctx: Path, tag: str, progress: Callable[[str], None], *, nocache: bool = False) -> str:
    """``docker build`` the context (no pull: the base image is local), streaming its output; the image id."""
    image_id = ""
    tail: list[str] = []
    for item in api.build(path=str(ctx), tag=tag, rm=True, forcerm=True, pull=False, decode=True, nocache=nocache):
        if "error" in item:
            detail = item.get("errorDetail", {}).get("message") or item["error"]
            raise ImageError(f"docker build of {tag} failed: {str(detail).strip()} | " + " | ".join(tail[-5:]))
        text = item.get("stream")
        if isinstance(text, str):
            for line in text.splitlines():
                if line.strip():
                    tail = [*tail[-19:], line.rstrip()]
                    progress(line.rstrip())
        aux = item.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            image_id = str(aux["ID"])
    if not image_id:
        image_id = str(api.inspect_image(tag)["Id"])
    return image_id


def push_image(api: Any, tag: str, progress: Callable[[str], None], auth: dict[str, str] | None = None) -> None:
    """``docker push`` the tag; one progress line per layer and status change (not every byte count).

    ``auth`` (``{"username", "password"}``, from ``[registry]``) goes to the engine for this push only; the engine
    picks TLS itself and trusts the registry's CA from ``/etc/docker/certs.d/HOST:PORT/ca.crt``."""
    repo, _, version = tag.rpartition(":")
    seen: dict[str, str] = {}
    for item in api.push(repo, tag=version, stream=True, decode=True, auth_config=auth):
        if "error" in item:
            detail = str(item.get("errorDetail", {}).get("message") or item["error"]).strip()
            if "unauthorized" in detail.lower() or "no basic auth credentials" in detail:
                detail += " (the registry's credentials: [registry] username and password_file)"
            raise ImageError(f"pushing {tag} failed: {detail}")
        status = item.get("status")
        if not isinstance(status, str):
            continue
        layer = str(item.get("id", ""))
        if seen.get(layer) != status:
            seen[layer] = status
            progress(f"{layer}: {status}" if layer else status)
