"""Moving files between a model directory and the daemon without putting bytes in JSON.

Push: the client opens each file and passes the open descriptors over the socket (SCM_RIGHTS), so the
daemon can store files it could not open itself (it may run as another user); it streams them into its
store, so memory stays bounded whatever the size. Checkout: the daemon passes read-only descriptors of its
objects back, and the client copies and verifies them.

Over SSH (a remote context) descriptors cannot cross: a push hashes each file, then sends what the daemon
does not have already inside frames (objects.put, MAX_PUT_CHUNK bytes at a time, base64), then creates the
version from the digests (versions.push). The local path is unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.manifest import MANIFEST_FILE, Manifest, parse_manifest
from daemon.protocol.names import check_rel_path

from ..client import DaemonClient

SKIP_DIRS = frozenset({".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ipynb_checkpoints"})
UPLOAD_BATCH = q.MAX_UPLOAD_FILES
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative, '/'-separated
    size: int
    executable: bool


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID, message)


def scan(directory: Path) -> list[LocalFile]:
    """The regular files of a model directory, sorted. Symlinks and special files are refused, not followed."""
    if not directory.is_dir():
        raise _invalid(f"{directory} is not a directory")
    found: list[LocalFile] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in files:
            full = Path(root) / name
            rel = full.relative_to(directory).as_posix()
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                raise _invalid(f"{rel} is a symlink; model directories must hold regular files")
            if not stat.S_ISREG(st.st_mode):
                raise _invalid(f"{rel} is not a regular file")
            try:
                check_rel_path(rel)
            except ValueError as exc:
                raise _invalid(str(exc)) from None
            found.append(LocalFile(rel, st.st_size, bool(st.st_mode & stat.S_IXUSR)))
        for d in dirs:
            if os.path.islink(Path(root) / d):
                raise _invalid(f"{(Path(root) / d).relative_to(directory)} is a symlinked directory")
    found.sort(key=lambda f: f.path)
    return found


def read_manifest(directory: Path) -> Manifest:
    if not directory.is_dir():
        raise _invalid(f"{directory} is not a directory")
    path = directory / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _invalid(f"{directory} has no {MANIFEST_FILE}; write one with `modeltui init {directory}`") from None
    try:
        return parse_manifest(data)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _in_git_work_tree(directory: Path) -> bool:
    """Cheap check before running git: is there a .git above (or in) the directory?"""
    return any((p / ".git").exists() for p in (directory.resolve(), *directory.resolve().parents))


def git_source(directory: Path) -> q.Source:
    """The git commit of the directory when it is inside a work tree (and whether it has local changes)."""
    if not _in_git_work_tree(directory):
        return q.Source(path=str(directory.resolve()))

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None or len(commit) not in (40, 64):
        return q.Source(path=str(directory.resolve()))
    dirty = bool(git("status", "--porcelain", "--", "."))
    return q.Source(git_commit=commit, git_dirty=dirty, path=str(directory.resolve()))


def _open_all(directory: Path, files: list[LocalFile]) -> list[int]:
    fds: list[int] = []
    try:
        for f in files:
            fds.append(os.open(directory / f.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _prepare(directory: Path, open_first: bool = True) -> tuple[list[LocalFile], q.Source, list[int]]:
    """Everything local a push needs, in one trip off the event loop: the manifest checked, the files, the
    git source, and the first upload batch opened (unless ``open_first`` is false)."""
    manifest = read_manifest(directory)
    files = scan(directory)
    present = {f.path for f in files}
    needed = [("model_file", manifest.model_path)]
    if manifest.evaluation is not None:
        needed.append(("evaluation.data", manifest.evaluation.data))
    for field_name, rel in needed:
        if rel not in present:  # say so before uploading gigabytes, not after
            raise _invalid(f"{MANIFEST_FILE}: {field_name} {rel!r} is not a file in {directory}")
    return files, git_source(directory), _open_all(directory, files[:UPLOAD_BATCH]) if open_first else []


async def push_directory(
    client: DaemonClient,
    directory: Path,
    *,
    name: str | None = None,
    message: str = "",
    tags: dict[str, str] | None = None,
    alias: str | None = None,
    progress: Progress | None = None,
) -> tuple[r.PushResult, int]:
    """Upload a directory's files and create a version. Returns the result and the bytes actually copied."""
    files, source, first_fds = await asyncio.to_thread(_prepare, directory, client.can_pass_fds)
    total = sum(f.size for f in files)
    meta = {"name": name, "message": message, "tags": tags or {}, "alias": alias, "source": source}
    if not client.can_pass_fds:
        return await _push_inline(client, directory, files, meta, total, progress)
    if len(files) <= UPLOAD_BATCH:  # the common case: upload and create the version in one round trip
        pushed = await _push_in_one_trip(client, files, first_fds, meta, total, progress)
        return pushed, pushed.bytes_copied
    uploaded, copied = await _upload_in_batches(client, directory, files, first_fds, total, progress)
    push = q.Push.model_validate(
        {
            "files": [
                {"path": f.path, "sha256": uploaded[f.path].sha256, "size": f.size, "executable": f.executable}
                for f in files
            ],
            **meta,
        }
    )
    result = await client.call(push)
    return result.model_copy(update={"bytes_copied": copied}), copied


async def _push_in_one_trip(client: DaemonClient, files: list[LocalFile], fds: list[int], meta: dict[str, Any],
                            total: int, progress: Progress | None) -> r.PushResult:
    """``PushFiles``: the files (their descriptors already open) and the version in one request."""
    one_trip = q.PushFiles.model_validate(
        {"files": [{"path": f.path, "size": f.size, "executable": f.executable} for f in files], **meta}
    )
    try:
        reply = await client.send(
            one_trip, fds=fds, progress=lambda n, _t, path: progress(n, total, path) if progress else None
        )
    finally:
        for fd in fds:
            os.close(fd)
    pushed = r.PushResult.model_validate_json(reply.raw)
    if progress is not None:
        progress(total, total, "")
    return pushed


async def _upload_in_batches(client: DaemonClient, directory: Path, files: list[LocalFile], first_fds: list[int],
                             total: int, progress: Progress | None) -> tuple[dict[str, r.UploadedObject], int]:
    """``Upload`` the files :data:`UPLOAD_BATCH` at a time (the first batch already open): each file's
    stored object by path, and the bytes actually copied."""
    uploaded: dict[str, r.UploadedObject] = {}
    done = 0
    copied = 0
    for start in range(0, len(files), UPLOAD_BATCH):
        batch = files[start : start + UPLOAD_BATCH]
        req = q.Upload(files=[q.UploadFile(path=f.path, size=f.size) for f in batch])
        base = done

        def on_progress(n: int, _t: int, path: str, base: int = base) -> None:
            if progress is not None:
                progress(base + n, total, path)

        fds = first_fds if start == 0 else await asyncio.to_thread(_open_all, directory, batch)
        try:
            reply = await client.send(req, fds=fds, progress=on_progress)
        finally:
            for fd in fds:
                os.close(fd)
        for item in r.UploadResult.model_validate_json(reply.raw).items:
            uploaded[item.path] = item
            done += item.size
            copied += item.size if item.copied else 0
        if progress is not None:
            progress(done, total, "")
    return uploaded, copied


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_chunk(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(q.MAX_PUT_CHUNK)


async def put_file(client: DaemonClient, path: Path, size: int, sha256: str,
                   progress: Callable[[int], None] | None = None) -> r.PutResult:  # fmt: skip
    """Send one file's content inside frames (objects.put): nothing when the daemon has it already, and an
    interrupted upload goes on from where the daemon stands."""
    state = await client.call(q.PutObject(sha256=sha256, size=size))
    while not state.stored:
        chunk = await asyncio.to_thread(_read_chunk, path, state.received)
        if not chunk:
            raise _invalid(f"{path} is shorter than when it was scanned; push again")
        data = base64.b64encode(chunk).decode("ascii")
        state = await client.call(q.PutObject(sha256=sha256, size=size, offset=state.received, data=data))
        if progress is not None:
            progress(state.received)
    return state


async def _push_inline(client: DaemonClient, directory: Path, files: list[LocalFile], meta: dict[str, Any],
                       total: int, progress: Progress | None) -> tuple[r.PushResult, int]:  # fmt: skip
    """A push without descriptors (over SSH): each file hashed, sent unless the daemon has it, then the
    version made from the digests. Returns the result and the bytes actually sent."""
    pushed: list[q.PushFile] = []
    done = copied = 0
    for f in files:
        path = directory / f.path
        sha256 = await asyncio.to_thread(_sha256_of, path)
        base = done

        def on_progress(n: int, base: int = base, name: str = f.path) -> None:
            if progress is not None:
                progress(base + n, total, name)

        state = await put_file(client, path, f.size, sha256, on_progress)
        done += f.size
        copied += f.size if state.copied else 0
        pushed.append(q.PushFile(path=f.path, sha256=sha256, size=f.size, executable=f.executable))
        if progress is not None:
            progress(done, total, "")
    result = await client.call(q.Push.model_validate({"files": pushed, **meta}))
    return result.model_copy(update={"bytes_copied": copied}), copied


def _conflict(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.CONFLICT, message)


def _not_empty(dest: Path) -> bool:
    if dest.exists() and not dest.is_dir():
        raise _conflict(f"{dest} exists and is not a directory; check out into a directory")
    return dest.exists() and any(dest.iterdir())


def _check_nothing_in_the_way(root: Path, path: str) -> None:
    """With --force, files already in ``root`` are replaced, but a directory where the version has a file
    (or a file where it has a directory) is refused: say which, rather than fail on a temporary name."""
    parts = PurePosixPath(path).parts
    for depth in range(1, len(parts) + 1):
        here = root.joinpath(*parts[:depth])
        if not here.exists() and not here.is_symlink():
            return
        if depth < len(parts) and not here.is_dir():
            raise _conflict(f"{here} is a file, but the version has a directory there ({path}); remove it first")
        if depth == len(parts) and here.is_dir() and not here.is_symlink():
            raise _conflict(f"{here} is a directory, but the version has a file there; remove it first")


def write_files(result: r.CheckoutResult, fds: list[int], dest: Path) -> None:
    """Copy each descriptor into ``dest``; a file is renamed into place only after its sha256 matched."""
    if dest.exists() and not dest.is_dir():
        raise _conflict(f"{dest} exists and is not a directory; check out into a directory")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    for info, fd in zip(result.files, fds, strict=True):
        check_rel_path(info.path)
        _check_nothing_in_the_way(root, info.path)
        # Resolve before creating anything: a symlinked directory inside dest must not lead outside it.
        parent = (root / info.path).parent.resolve()
        if parent != root and root not in parent.parents:
            raise _invalid(f"refusing to write outside {root}: {info.path}")
        parent.mkdir(parents=True, exist_ok=True)
        target = parent / PurePosixPath(info.path).name
        # A fresh temporary name, created exclusively and never through a symlink planted in dest.
        out_fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".modeltui-tmp", dir=target.parent)
        try:
            digest = hashlib.sha256()
            size = 0
            while chunk := os.pread(fd, 1 << 20, size):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out_fd, view) :]
                size += len(chunk)
            if digest.hexdigest() != info.sha256 or size != info.size:
                raise ProtocolError(
                    ErrorCode.INTEGRITY, f"{info.path}: content does not match its sha256 {info.sha256[:12]}…"
                )
            os.fchmod(out_fd, 0o755 if info.executable else 0o644)
            os.close(out_fd)
            out_fd = -1
            os.replace(tmp_name, target)  # replaces a symlink at target itself, never its target
        except BaseException:
            if out_fd >= 0:
                os.close(out_fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise


async def checkout(client: DaemonClient, ref: str, dest: Path, *, force: bool = False) -> r.CheckoutResult:
    """Write a version's files into ``dest``, byte-exact, verifying every sha256 before it is renamed in."""
    if not client.can_pass_fds:
        raise _invalid("checkout needs the daemon's file descriptors, which cannot cross SSH: run `modeltui "
                       "checkout` on that host (or copy the files from there)")  # fmt: skip
    if not force and await asyncio.to_thread(_not_empty, dest):
        raise ProtocolError(ErrorCode.CONFLICT, f"{dest} is not empty; use --force to write into it")
    files: list[r.FileInfo] = []
    first: r.CheckoutResult | None = None
    while first is None or len(files) < first.total_files:
        # After the first page, ask for the exact version: an alias that moves meanwhile changes nothing.
        page_ref = ref if first is None else f"{first.version.model}:{first.version.number}"
        reply = await client.send(q.Checkout(ref=page_ref, offset=len(files)))
        try:
            page = r.CheckoutResult.model_validate_json(reply.raw)
            if len(reply.fds) != len(page.files) or (first is not None and not page.files):
                raise ProtocolError(ErrorCode.BAD_FRAME, "checkout page and its descriptors do not match")
            await asyncio.to_thread(write_files, page, reply.fds, dest)
        finally:
            for fd in reply.fds:
                os.close(fd)
        first = first or page
        files += page.files
    return first.model_copy(update={"files": files})
