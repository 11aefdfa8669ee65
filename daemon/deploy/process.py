"""The embedded default backend: the serving runtime as a child process of the daemon.

Children run in their own session (an SSH hang-up or a daemon restart does not touch them) with their
output appended to ``STATE/deployments/NAME/serving.log``, which the daemon rotates by copy-and-truncate
(the child keeps its O_APPEND descriptor, so rotation needs no cooperation from it). Each child carries
``--instance OWNER/DEPLOYMENT/ID`` on its command line: after a restart the daemon finds its children in
``/proc`` and adopts them (identity = pid + start time, so a reused pid is never mistaken for one). A
process is watched through a pidfd, which works for adopted processes too, not only for our children.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import daemon
from daemon.settings import DeploySection
from daemon.workload import WorkloadError, WorkloadIdentity

from .base import Backend, BackendError, Instance, InstanceSpec, ProgressLine
from .zygote import Zygote

log = logging.getLogger("modeltuid.deploy.process")

LOG_NAME = "serving.log"
#: Largest read of new log bytes per follow tick; more waits for the next tick (bounded memory).
FOLLOW_CHUNK = 256 * 1024
FOLLOW_INTERVAL = 0.2
#: Directory holding the ``daemon`` package: the child imports ``daemon.serving`` from it.
PACKAGE_ROOT = str(Path(daemon.__file__).resolve().parent.parent)


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _started_at(ticks: int) -> datetime:
    return datetime.fromtimestamp(_boot_time() + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def _arg(argv: list[str], flag: str) -> str | None:
    with contextlib.suppress(ValueError, IndexError):
        return argv[argv.index(flag) + 1]
    return None


def _read_from(path: Path, pos: int) -> tuple[bytes, int]:
    """New bytes of the log from ``pos`` (from 0 again when the file shrank: it was rotated)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < pos:
                pos = 0
            f.seek(pos)
            data = f.read(FOLLOW_CHUNK)
    except FileNotFoundError:
        return b"", pos
    return data, pos + len(data)


def _read_record(path: Path) -> bytes:
    """A zygote record: written where workloads write, so read without following a link, only if regular."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        return os.read(fd, 64 * 1024)
    finally:
        os.close(fd)


class ProcessBackend(Backend):
    name = "process"

    def __init__(
        self,
        settings: DeploySection,
        *,
        owner: str,
        log_root: Path,
        records: Path,
        python: str = sys.executable,
        identity: WorkloadIdentity | None = None,
    ) -> None:
        self.settings = settings
        self.owner = owner
        self.log_root = log_root
        #: one JSON file per instance forked by the zygote (their command line is the zygote's); written by
        #: the zygote, so in the workload directory: trusted only for processes that run as the workload
        self.records = records
        #: the daemon's own copy of each such record, in the state directory (no workload can change it):
        #: adoption takes the deployment and the ports from here, the workload's file is only a hint
        self.own_records = log_root.parent / "deploy" / "forked"
        self.python = python
        #: who the instances run as (default: as the daemon, with their files in the state directory)
        self.identity = identity or WorkloadIdentity("", os.geteuid(), os.getegid(), records.parent.parent)
        self.zygote = Zygote(
            python, settings.preload, self._base_env(), log_root.parent / "deploy" / "zygote.log", self.identity.wrap
        )

    def log_path(self, deployment: str) -> Path:
        return self.log_root / deployment / LOG_NAME

    def models_root(self, default: Path) -> Path:
        return self.identity.root / "deploy" / "models" if self.identity.user else default

    def warm(self) -> None:
        """Start the zygote in the background (deployments started before it is ready spawn cold)."""
        if self.settings.zygote:
            self.zygote.start()

    # -- lifecycle -------------------------------------------------------------------------------------------

    @staticmethod
    def _base_env() -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": os.environ.get("HOME", "/"),
            "PYTHONPATH": PACKAGE_ROOT,
            "PYTHONUNBUFFERED": "1",
        }

    def _runtime_args(self, spec: InstanceSpec) -> list[str]:
        return [
            "--model-dir",
            str(spec.model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(spec.admin_port),
            "--public-port",
            str(spec.public_port),
            "--model-version",
            str(spec.version),
            "--instance",
            f"{self.owner}/{spec.deployment}/{spec.instance_id}",
            *([] if spec.feedback_inputs else ["--no-feedback-inputs"]),
        ]

    def _instance(self, spec: InstanceSpec, pid: int, ticks: int | None) -> Instance:
        return Instance(
            backend=self.name,
            deployment=spec.deployment,
            instance_id=spec.instance_id,
            version=spec.version,
            key=f"{pid}:{ticks}",
            admin_port=spec.admin_port,
            public_port=spec.public_port,
            started_at=_started_at(ticks) if ticks is not None else datetime.now(UTC),
        )

    @staticmethod
    def _announce(spec: InstanceSpec, how: str) -> Path:
        spec.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = spec.log_dir / LOG_NAME
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
            os.write(fd, f"--- {stamp} starting version {spec.version} (instance {spec.instance_id}, {how})\n".encode())
        finally:
            os.close(fd)
        return path

    def _spawn(self, spec: InstanceSpec, env: dict[str, str]) -> Instance:
        """Start the runtime in a new interpreter (slow: imports everything) with stdout/stderr → the log."""
        log_path = self._announce(spec, "cold start")
        argv = self.identity.wrap([self.python, "-m", "daemon.serving", *self._runtime_args(spec)])
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(
                argv[0],
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, fd, 1),
                    (os.POSIX_SPAWN_DUP2, fd, 2),
                ],
                setsid=True,
            )
        except OSError as exc:
            raise BackendError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        return self._instance(spec, pid, _start_ticks(pid))

    async def start(self, spec: InstanceSpec, progress: ProgressLine) -> Instance:
        try:
            self.identity.check()
        except WorkloadError as exc:
            raise BackendError(str(exc)) from None
        await asyncio.to_thread(self.identity.share, [spec.model_dir])  # the workload account reads its files
        env = {**self._base_env(), "MODELTUI_DEPLOYMENT": spec.deployment, **spec.env, **spec.runtime_env}
        # Libraries read variables such as OMP_NUM_THREADS when imported: a deployment that sets its own
        # environment gets a fresh interpreter, where they take effect.
        if self.settings.zygote and not spec.env:
            await asyncio.to_thread(self.records.mkdir, parents=True, exist_ok=True, mode=0o700)
            log_path = await asyncio.to_thread(self._announce, spec, "forked from the zygote")
            label = {
                "deployment": spec.deployment,
                "instance_id": spec.instance_id,
                "version": spec.version,
                "admin_port": spec.admin_port,
                "public_port": spec.public_port,
                "owner": self.owner,
            }
            record = self.records / f"{spec.instance_id}.json"
            forked = await self.zygote.spawn(self._runtime_args(spec), env, log_path, record, label)
            if forked is not None:
                progress(f"started version {spec.version} (pid {forked[0]}, forked from the warm zygote)")
                await asyncio.to_thread(self._keep_record, {**label, "pid": forked[0], "ticks": forked[1]})
                return self._instance(spec, *forked)
        progress(f"starting version {spec.version} as a new local process")
        return await asyncio.to_thread(self._spawn, spec, env)

    @staticmethod
    def _pid(instance: Instance) -> tuple[int, int]:
        pid, _, ticks = instance.key.partition(":")
        return int(pid), int(ticks) if ticks.isdigit() else -1

    def _open(self, instance: Instance) -> int | None:
        """A pidfd on the instance's process, or None when it is gone (or its pid now names another one)."""
        pid, ticks = self._pid(instance)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if _start_ticks(pid) != ticks:  # checked after opening: the pidfd pins the process we checked
            os.close(fd)
            return None
        return fd

    @staticmethod
    def _reap(pid: int) -> int | None:
        """Collect the exit status of our own child (None for an adopted process: not ours to wait for)."""
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status) if got else None

    async def wait(self, instance: Instance) -> int | None:
        fd = self._open(instance)
        pid, _ = self._pid(instance)
        if fd is None:
            return self._reap(pid)
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        forked = pid in self.zygote.forked  # the zygote reaps it and reports its status
        for _ in range(100):  # the pidfd turns readable just before the process can be reaped
            status = self.zygote.exits.pop(pid, None) if forked else self._reap(pid)
            if status is not None:
                self.zygote.forked.discard(pid)
                return status
            if not forked and _start_ticks(pid) is None:
                return None
            await asyncio.sleep(0.01)
        self.zygote.forked.discard(pid)
        return None

    async def stop(self, instance: Instance, grace: float = 10.0) -> None:
        try:
            await self._stop(instance, grace)
        finally:
            for where in (self.records, self.own_records):
                with contextlib.suppress(FileNotFoundError):
                    (where / f"{instance.instance_id}.json").unlink()

    def _keep_record(self, record: dict[str, object]) -> None:
        """The daemon's own record of an instance the zygote forked (written whole, then renamed)."""
        self.own_records.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.own_records / f"{record['instance_id']}.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(tmp, path)

    async def _stop(self, instance: Instance, grace: float) -> None:
        fd = self._open(instance)
        if fd is None:
            self._reap(self._pid(instance)[0])
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGTERM)
            waiter = asyncio.ensure_future(self.wait(instance))
            try:
                await asyncio.wait_for(asyncio.shield(waiter), grace)
            except TimeoutError:
                log.warning("instance %s ignored SIGTERM for %.0f s; killing it", instance.instance_id, grace)
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                await waiter
        finally:
            os.close(fd)

    def _scan(self, uid: int | None = None) -> list[Instance]:
        prefix = f"{self.owner}/"
        found: list[Instance] = []
        uid = self.identity.process_uid if uid is None else uid
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != uid:
                    continue
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
            except OSError:
                continue
            label = _arg(argv, "--instance")
            if not label or not label.startswith(prefix) or "daemon.serving" not in argv:
                continue
            parts = label.split("/")
            if len(parts) != 3:
                continue
            _, deployment, instance_id = parts
            pid = int(entry.name)
            ticks = _start_ticks(pid)
            try:
                admin, public, version = (
                    int(_arg(argv, f) or "") for f in ("--port", "--public-port", "--model-version")
                )
            except ValueError:
                continue
            if ticks is None:
                continue
            found.append(
                Instance(
                    backend=self.name,
                    deployment=deployment,
                    instance_id=instance_id,
                    version=version,
                    key=f"{pid}:{ticks}",
                    admin_port=admin,
                    public_port=public,
                    started_at=_started_at(ticks),
                )
            )
        return found

    def _scan_records(self, records: Path | None = None, uid: int | None = None) -> list[Instance]:
        """Instances forked by a zygote, from the records in ``records`` (default: the daemon's own, the only
        ones trusted for adoption); records of ended processes are removed."""
        found: list[Instance] = []
        records = self.own_records if records is None else records
        uid = self.identity.process_uid if uid is None else uid
        for path in records.glob("*.json") if records.is_dir() else []:
            try:
                rec = json.loads(_read_record(path))
                alive = rec["owner"] == self.owner and _start_ticks(int(rec["pid"])) == int(rec["ticks"])
                # A record is written where workloads write: it names only a process of theirs.
                alive = alive and os.stat(f"/proc/{int(rec['pid'])}").st_uid == uid
            except (OSError, ValueError, KeyError, TypeError):
                alive = False
            if not alive:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            found.append(
                Instance(
                    backend=self.name,
                    deployment=rec["deployment"],
                    instance_id=rec["instance_id"],
                    version=int(rec["version"]),
                    key=f"{rec['pid']}:{rec['ticks']}",
                    admin_port=int(rec["admin_port"]),
                    public_port=int(rec["public_port"]),
                    started_at=_started_at(int(rec["ticks"])),
                )
            )
        return found

    def _unowned(self, found: list[Instance]) -> list[Instance]:
        """Live processes the zygote's records (written where workloads write) name but the daemon's own records
        do not: forked before the daemon kept its own copy, or a record a workload made up. Never adopted."""
        known = {inst.key for inst in found}
        return [inst for inst in self._scan_records(self.records) if inst.key not in known]

    async def discover(self) -> list[Instance]:
        found = await asyncio.to_thread(lambda: self._scan() + self._scan_records())
        for odd in await asyncio.to_thread(self._unowned, found):
            log.warning(
                "stopping process %s (named by a zygote record of %s): the daemon has no record of its own "
                "for it; the deployment's supervisor starts it again",
                odd.key,
                odd.deployment,
            )
            await self._stop(odd, grace=self.settings.stop_grace_seconds)
        for old in await asyncio.to_thread(self._legacy):
            # Started before [workloads] user applied: it holds the daemon's identity. Stopped, not adopted:
            # the deployment's supervisor starts it again as the workload account.
            log.warning(
                "stopping instance %s of %s: it runs as the daemon's own user; it starts again as %s",
                old.instance_id,
                old.deployment,
                self.identity.user,
            )
            await self._stop(old, grace=self.settings.stop_grace_seconds)
        return found

    def _legacy(self) -> list[Instance]:
        """Instances running as the daemon's own uid while workloads have their own (an upgrade, or the opt-out
        withdrawn): cold-started ones by their command line, forked ones by the zygote's old records."""
        if not self.identity.switches:
            return []
        old_records = self.log_root.parent / "deploy" / "instances"
        legacy = self._scan(os.geteuid())
        if old_records != self.records:
            legacy += self._scan_records(old_records, os.geteuid())
            for path in old_records.glob("*.json"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return legacy

    async def close(self) -> None:
        await self.zygote.close()

    # -- logs ------------------------------------------------------------------------------------------------

    def _tail(self, deployment: str, tail: int) -> list[str]:
        path = self.log_path(deployment)
        lines: list[str] = []
        for candidate in (path, path.with_name(LOG_NAME + ".1")):
            if len(lines) >= tail:
                break
            try:
                with open(candidate, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    size = f.tell()
                    f.seek(max(0, size - max(64 * 1024, tail * 512)))
                    data = f.read()
            except FileNotFoundError:
                continue
            got = data.decode(errors="replace").splitlines()
            if size > len(data) and got:
                got = got[1:]  # the first line is cut
            lines = got[-(tail - len(lines)) :] + lines if tail > len(lines) else lines
        return lines[-tail:] if tail else []

    async def logs(self, instance: Instance, tail: int) -> list[str]:
        return await asyncio.to_thread(self._tail, instance.deployment, tail)

    async def follow(self, instance: Instance) -> AsyncIterator[list[str]]:
        """New lines as they are appended; an empty batch on idle ticks (lets the caller check whether
        anyone still listens). Survives rotation: a file shorter than the read position was truncated."""
        path = self.log_path(instance.deployment)
        try:
            pos = path.stat().st_size
        except FileNotFoundError:
            pos = 0
        partial = b""
        while True:
            data, pos = await asyncio.to_thread(_read_from, path, pos)
            data = partial + data
            cut = data.rfind(b"\n") + 1
            partial = data[cut:]
            if len(partial) > FOLLOW_CHUNK:  # an endless line: flush it anyway
                cut, partial = len(data), b""
            yield data[:cut].decode(errors="replace").splitlines()
            if len(data) - len(partial) < FOLLOW_CHUNK // 2:
                await asyncio.sleep(FOLLOW_INTERVAL)

    def rotate(self, deployment: str) -> bool:
        """Copy-and-truncate the log when it is over the size limit; keeps ``log_files`` old copies."""
        path = self.log_path(deployment)
        limit = self.settings.log_max_mb << 20
        try:
            if path.stat().st_size <= limit:
                return False
        except FileNotFoundError:
            return False
        keep = self.settings.log_files
        for i in range(keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path.with_name(f"{LOG_NAME}.{i}"), path.with_name(f"{LOG_NAME}.{i + 1}"))
        tmp = path.with_name(f".{LOG_NAME}.1.tmp")
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(path, "rb") as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            os.truncate(path, 0)  # lines written between the last read and here are lost: logrotate's copytruncate
        os.replace(tmp, path.with_name(f"{LOG_NAME}.1"))
        return True

    def remove_logs(self, deployment: str) -> None:
        directory = self.log_root / deployment
        for p in directory.glob(f"{LOG_NAME}*"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()
