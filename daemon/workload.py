"""The identity workloads run under: serving processes (cold or forked from the zygote), maintenance workers
and searches never hold the daemon's own uid (docs/security.md, "Workloads run under their own uid").

In system mode the daemon runs as its service user and starts each workload through ``setpriv`` (util-linux)
as ``[workloads] user`` (default ``modeltui-run``, its primary group too), with no supplementary groups, no
capabilities left (inheritable and ambient cleared) and no-new-privileges. Switching needs CAP_SETUID and
CAP_SETGID (and CAP_KILL to signal workloads later): the unit grants them as ambient capabilities; a root
daemon has them anyway. When the switch is impossible (no such user, no capability, no setpriv) nothing runs
as the daemon instead: every workload start fails with a message naming the setting. ``user = ""`` opts out
(workloads run as the daemon, as in user mode), logged as a warning at start.

What workloads read (a version's files) and write (a worker's challenger) lives in the *workload
directory*, beside the 0700 state directory (``STATE-workloads``, or ``[workloads] dir``): 0750 owned by the
daemon with the workload group, the daemon being a member of that group (it adds it to its own groups at
start with CAP_SETGID), so it can hand files over (group read). What a worker writes is the workload
account's, so the daemon never reads or writes through it: it takes its own copy, following no link
(:meth:`WorkloadIdentity.take_back`). Without a switch the workload directory is the state directory itself,
laid out as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daemon.settings import Settings

log = logging.getLogger("modeltuid.workloads")

#: the account a system-mode install makes for workloads (docs/operations.md, "Install")
DEFAULT_USER = "modeltui-run"
#: capability bits (linux/capability.h): what switching and signalling workloads need
CAP_KILL, CAP_SETGID, CAP_SETUID = 5, 6, 7
NEEDED_CAPS = {"CAP_SETUID": CAP_SETUID, "CAP_SETGID": CAP_SETGID, "CAP_KILL": CAP_KILL}


class WorkloadError(RuntimeError):
    """A workload cannot start under its own identity; the message says why and which setting decides."""


@dataclass(frozen=True)
class WorkloadIdentity:
    user: str
    """The workload account ("" = workloads run as the daemon: user mode, or the explicit opt-out)."""
    uid: int
    gid: int
    root: Path
    """Where workloads' files live (``deploy/models``, ``deploy/instances``, ``maintenance`` under it)."""
    problem: str | None = None
    """Why workloads cannot start (fail closed); None when they can."""
    setpriv: str = "setpriv"

    @property
    def switches(self) -> bool:
        return bool(self.user) and self.problem is None

    def check(self) -> None:
        if self.problem is not None:
            raise WorkloadError(self.problem)

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run as the workload account (raises :class:`WorkloadError` when it cannot be)."""
        self.check()
        if not self.user:
            return argv
        return [
            self.setpriv,
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--no-new-privs",
            "--",
            *argv,
        ]

    @property
    def process_uid(self) -> int:
        """The uid workload processes run as (the daemon's own when there is no switch)."""
        return self.uid if self.user else os.geteuid()

    def share(self, readable: Iterable[Path] = (), writable: Iterable[Path] = ()) -> None:
        """Blocking. Let the workload account read ``readable`` trees and write in ``writable`` ones (group
        bits and the workload group), and reach them (g+x on each directory up to the workload directory).
        Nothing to do without a switch."""
        if not self.switches:
            return
        for path, write in [*((p, False) for p in readable), *((p, True) for p in writable)]:
            path = Path(path)
            if not path.exists():
                continue
            if self.root not in path.parents:  # never the state directory's files, whatever a caller passes
                log.warning("not sharing %s with the workload account: it is outside %s", path, self.root)
                continue
            for parent in path.parents:
                if parent == self.root or self.root not in parent.parents:
                    break
                self._grant(parent, False, only_search=True)
            if path.is_dir() and not path.is_symlink():
                for top, dirs, files in os.walk(path):
                    self._grant(Path(top), write)
                    for f in files:
                        self._grant(Path(top) / f, write)
                    dirs[:] = [d for d in dirs if not (Path(top) / d).is_symlink()]
            else:
                self._grant(path, write)

    def make_room(self, output: Path) -> bool:
        """Blocking. Before a worker writes ``output``: an empty directory the daemon made there is removed and
        its parent opened to the workload group (write, with the sticky bit: the daemon's own files in it stay
        the daemon's), so the worker makes ``output`` itself and owns what it writes. True when the worker must
        make it (there is a switch)."""
        if not self.switches:
            return False
        output = Path(output)
        with contextlib.suppress(FileNotFoundError):
            if output.is_dir() and not output.is_symlink() and output.lstat().st_uid == os.geteuid():
                output.rmdir()  # only when empty; otherwise OSError, as the caller checked it was empty
        self.share([output.parent])
        st = output.parent.lstat()
        if st.st_uid == os.geteuid():
            os.chmod(output.parent, stat.S_IMODE(st.st_mode) | stat.S_IRWXG | stat.S_ISVTX)
        return True

    def take_back(self, output: Path) -> None:
        """Blocking. After a worker wrote ``output``: the daemon takes its own copy, so that nothing a workload
        controls (the tree is the workload account's: any workload process may change it) is read through or
        written through later. The worker's tree is moved aside; its regular files and directories are copied
        back into ``output`` without following any symbolic link (each directory opened with O_NOFOLLOW
        relative to its parent: a link swapped in meanwhile fails the copy); links and special files are left
        out. The copy is the daemon's, shared read-only with the workload group; the worker's tree is removed.
        Raises OSError when the copy fails."""
        if not self.switches:
            return
        output = Path(output)
        aside = output.with_name(f".{output.name}.worker")
        try:
            os.rename(output, aside)  # the daemon owns the parent: the worker cannot swap it back
        except FileNotFoundError:
            return
        try:
            top = os.open(aside, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.mkdir(output, 0o700)
                _copy_tree(top, output)
            finally:
                os.close(top)
        finally:
            # What the worker wrote becomes removable by the daemon (group write, set by its owner), then goes.
            argv = self.wrap(["chmod", "-R", "g+rwX", "--", str(aside)])
            subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=False)
            shutil.rmtree(aside, ignore_errors=True)
        self.share([output])

    def _grant(self, path: Path, write: bool, *, only_search: bool = False) -> None:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            return  # a workload's own file (or a link): it decides
        if st.st_gid != self.gid:
            os.chown(path, -1, self.gid, follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode)
        is_dir = stat.S_ISDIR(st.st_mode)
        if only_search:
            want = mode | stat.S_IXGRP
        else:
            want = mode | stat.S_IRGRP | (stat.S_IWGRP if write else 0)
            if is_dir or mode & stat.S_IXUSR:
                want |= stat.S_IXGRP
            if is_dir and write:
                want |= stat.S_IWUSR  # the daemon clears out what a worker wrote
        if want != mode:
            os.chmod(path, want)


#: The most a worker's output may hold, in files (a bound on what the daemon copies back).
MAX_OUTPUT_FILES = 100_000


def _copy_tree(src_dir: int, dest: Path, budget: list[int] | None = None) -> None:
    """Copy the regular files and directories under the open directory ``src_dir`` into ``dest`` (exists),
    opening every entry relative to its parent without following links."""
    budget = [MAX_OUTPUT_FILES] if budget is None else budget
    with os.scandir(src_dir) as entries:
        names = [(e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in entries]
    for name, is_dir, is_file in names:
        budget[0] -= 1
        if budget[0] < 0:
            raise OSError(f"more than {MAX_OUTPUT_FILES} files in a worker's output")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        if is_dir:
            fd = os.open(name, flags | os.O_DIRECTORY, dir_fd=src_dir)
            try:
                os.mkdir(dest / name, 0o700)
                _copy_tree(fd, dest / name, budget)
            finally:
                os.close(fd)
        elif is_file:
            fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=src_dir)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):  # swapped for a FIFO or device meanwhile
                    continue
                mode = 0o700 if st.st_mode & stat.S_IXUSR else 0o600
                out = os.open(dest / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
                with open(out, "wb") as f:
                    while chunk := os.read(fd, 1 << 20):
                        f.write(chunk)
            finally:
                os.close(fd)
        # symbolic links, sockets, FIFOs, devices: left out


def _capabilities() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _workload_dir(settings: Settings) -> Path:
    configured = settings.workloads.dir
    if configured is not None:
        return configured if configured.is_absolute() else settings.config_path.parent / configured
    return settings.state_dir.with_name(settings.state_dir.name + "-workloads")


def setup(settings: Settings) -> WorkloadIdentity:
    """Blocking, once at start: who workloads run as, and their directory made ready. Never raises: what
    prevents the switch is kept as ``problem`` and logged; each workload start then reports it."""
    configured = settings.workloads.user
    user = (DEFAULT_USER if settings.mode == "system" else "") if configured is None else configured
    if not user:
        if settings.mode == "system":
            log.warning(
                '[workloads] user = "": deployments and maintenance workers run as the daemon\'s own user, '
                "which is admin on its socket and owns the state directory (docs/security.md)"
            )
        return WorkloadIdentity("", os.geteuid(), os.getegid(), settings.state_dir)
    root = _workload_dir(settings)
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return _refused(user, root, f"no user {user!r} on this host (create it, see docs/operations.md)")
    uid, gid = pw.pw_uid, pw.pw_gid
    if uid == os.geteuid() or uid == 0:
        who = "root" if uid == 0 else "the daemon's own user"
        return _refused(user, root, f"{user!r} is {who}")
    if gid in (os.getegid(), 0):
        return _refused(user, root, f"the primary group of {user!r} is the daemon's (or root's): use its own group")
    setpriv = shutil.which("setpriv", path=os.environ.get("PATH", "") + ":/usr/bin:/bin")
    if setpriv is None:
        return _refused(user, root, "setpriv (util-linux) is not installed")
    if os.geteuid() != 0:
        caps = _capabilities()
        missing = [name for name, bit in NEEDED_CAPS.items() if not caps >> bit & 1]
        if missing:
            return _refused(
                user,
                root,
                f"the daemon (uid {os.geteuid()}) lacks {', '.join(missing)}: the unit grants them with "
                "AmbientCapabilities= (docs/operations.md)",
            )
    try:
        if gid not in os.getgroups():
            os.setgroups([*os.getgroups(), gid])  # to hand files to the workload group, and read theirs
        root.mkdir(mode=0o750, exist_ok=True)
        st = root.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return _refused(user, root, f"{root} is not a directory owned by the daemon's user")
        os.chown(root, -1, gid)
        os.chmod(root, 0o750)
        for sub, mode in (("deploy", 0o750), ("deploy/models", 0o750), ("deploy/instances", 0o770),
                          ("maintenance", 0o750)):  # fmt: skip
            path = root / sub
            path.mkdir(mode=mode, exist_ok=True)
            os.chown(path, -1, gid)
            os.chmod(path, mode)
    except OSError as exc:
        return _refused(user, root, f"cannot prepare the workload directory {root}: {exc.strerror or exc}")
    identity = WorkloadIdentity(user, uid, gid, root, setpriv=setpriv)
    log.info("workloads run as %s (uid %d, gid %d), their files in %s", user, uid, gid, root)
    return identity


def _refused(user: str, root: Path, why: str) -> WorkloadIdentity:
    problem = (
        f"workloads cannot run as [workloads] user = {user!r}: {why}; nothing runs as the daemon instead "
        '(set [workloads] user = "" to accept that)'
    )
    log.error("%s", problem)
    return WorkloadIdentity(user, -1, -1, root, problem=problem)


_current: WorkloadIdentity | None = None


def configure(identity: WorkloadIdentity | None) -> None:
    """Set the identity maintenance workers run under (the daemon does, at start)."""
    global _current
    _current = identity


def current() -> WorkloadIdentity | None:
    """The identity set by :func:`configure`; None (run as the caller) outside a daemon, e.g. in unit tests."""
    return _current
