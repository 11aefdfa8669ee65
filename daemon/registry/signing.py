"""Signed versions: checking a signature with the real ``ssh-keygen``, and the ``[signing] require`` policy.

A signature is ``ssh-keygen -Y sign -n modeltui-version`` over :func:`daemon.protocol.signing.statement` (the
model's name and the version's digest). :class:`SignatureChecker` checks one in three runs of ``ssh-keygen``,
each in a thread with a timeout: ``check-novalidate`` (is it a good signature of this statement at all? if
not it is refused), ``find-principals`` (which allowed signers hold its key?) and ``verify -I PRINCIPAL``
(does the allowed-signers file let that principal sign in this namespace, now?). A good signature whose key
no allowed signer holds is "not allowed": recorded, shown, never counted.

:class:`SigningPolicy` is the one place that decides whether a version may be deployed, rolled out or
promoted under ``[signing] require``; it checks the version's signatures again against the allowed-signers
file as it is now (a signer removed from the file stops counting) and records what it found.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError, conflict, invalid
from daemon.protocol.signing import NAMESPACE, parse_signature, statement
from daemon.registry.service import Registry
from daemon.settings import SigningSection
from daemon.store.tables import utcnow

log = logging.getLogger(__name__)

Status = Literal["verified", "not allowed"]
#: What a policy check is for: starting a version in a deployment, or moving an alias to it.
Stage = Literal["deploy", "promote"]
_ACTION = {"deploy": "deploy it or roll it out", "promote": "move an alias to it"}


@dataclass(frozen=True)
class Verdict:
    status: Status
    principal: str | None


class SignatureChecker:
    """Runs ``ssh-keygen -Y`` (blocking: call it in a thread)."""

    def __init__(self, section: SigningSection) -> None:
        self.section = section

    def _run(self, args: list[str], data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                ["ssh-keygen", "-Y", *args],
                input=data,
                capture_output=True,
                timeout=self.section.timeout_seconds,
                check=False,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            )
        except FileNotFoundError:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE, "ssh-keygen is not installed on the daemon's host (openssh-client)"
            ) from None
        except subprocess.TimeoutExpired:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                f"ssh-keygen took longer than {self.section.timeout_seconds:g} s ([signing] timeout_seconds)",
            ) from None

    def check(self, model: str, digest: str, armored: str) -> Verdict:
        """The verdict on ``armored`` as a signature of ``model``'s version with ``digest``; INVALID when it is
        no good signature of that statement at all."""
        try:
            parse_signature(armored)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        data = statement(model, digest)
        with tempfile.TemporaryDirectory(prefix="modeltui-sig-") as tmp:
            sig = Path(tmp) / "version.sig"
            fd = os.open(sig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(armored.strip() + "\n")
            if self._run(["check-novalidate", "-n", NAMESPACE, "-s", str(sig)], data).returncode != 0:
                raise invalid(
                    f"the signature does not verify against {model} with digest {digest[:12]}…: it was made over "
                    "other content or another name, or it was altered"
                )
            allowed = self.section.allowed_signers
            if allowed is None:
                return Verdict("not allowed", None)
            if not allowed.is_file():
                log.warning("[signing] allowed_signers = %s: no such file; no signer is allowed", allowed)
                return Verdict("not allowed", None)
            found = self._run(["find-principals", "-s", str(sig), "-f", str(allowed)])
            if found.returncode != 0:
                return Verdict("not allowed", None)
            for principal in found.stdout.decode("utf-8", "replace").splitlines():
                principal = principal.strip()
                if not principal:
                    continue
                args = ["verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE, "-s", str(sig)]
                if self._run(args, data).returncode == 0:
                    return Verdict("verified", principal)
        return Verdict("not allowed", None)


class SigningPolicy:
    """Signs versions (``versions.sign``) and enforces ``[signing] require``."""

    def __init__(self, registry: Registry, section: SigningSection) -> None:
        self.registry = registry
        self.section = section
        self.checker = SignatureChecker(section)
        #: Told the model whose recorded signatures were checked again (the daemon drops its cached reads).
        self.on_checked: Callable[[str], None] = lambda model: None
        #: (device, inode, size, mtime) of the allowed-signers file when every signature was last checked
        self._seen: tuple[int, int, int, int] | Literal["never"] | None = "never"

    async def sign(self, req: q.SignVersion, user: str) -> r.SignResult:
        model, number, digest = await asyncio.to_thread(self.registry.resolve, req.ref)
        if digest != req.digest:
            raise conflict(f"{model}:{number} has digest {digest[:12]}…, not the signed {req.digest[:12]}…")
        verdict = await asyncio.to_thread(self.checker.check, model, digest, req.signature)
        key = parse_signature(req.signature)
        now = utcnow()
        values = {
            "fingerprint": key.fingerprint,
            "key_type": key.key_type,
            "signature": req.signature.strip() + "\n",
            "status": verdict.status,
            "principal": verdict.principal,
            "signed_by": user,
            "signed_at": now,
            "checked_at": now,
        }
        return await asyncio.to_thread(self.registry.record_signature, model, number, digest, values)

    def applies(self, stage: Stage) -> bool:
        require = self.section.require
        return require == "promote" or (require == "deploy" and stage == "deploy")

    def _stamp(self) -> tuple[int, int, int, int] | None:
        path = self.section.allowed_signers
        if path is None:
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    async def refresh(self) -> int:
        """When the allowed-signers file changed (edited, replaced, added or removed) since the last look,
        check every recorded signature against it again, so ``show`` and ``log`` say "not allowed" for a
        signer taken out of it (and "verified" for one put in) without waiting for a deploy. The daemon calls
        this periodically, off the event loop's hot paths; returns how many signatures changed status."""
        stamp = await asyncio.to_thread(self._stamp)
        if stamp == self._seen:
            return 0
        self._seen = stamp
        changed: list[tuple[int, str, str | None]] = []
        models: set[str] = set()
        for sid, model, _number, digest, text, status, principal in await asyncio.to_thread(
            self.registry.all_signatures
        ):
            try:
                verdict = await asyncio.to_thread(self.checker.check, model, digest, text)
            except ProtocolError as exc:
                if exc.code is not ErrorCode.INVALID:
                    raise
                verdict = Verdict("not allowed", None)
            if (verdict.status, verdict.principal) != (status, principal):
                changed.append((sid, verdict.status, verdict.principal))
                models.add(model)
        if changed:
            await asyncio.to_thread(self.registry.record_signature_checks, changed)
            for model in models:
                self.on_checked(model)
            log.info("the allowed-signers file changed: %d signature(s) changed status", len(changed))
        return len(changed)

    def check_push_alias(self, alias: str | None) -> None:
        """A push cannot move an alias under "promote": the version it makes has no signature yet."""
        if alias is not None and self.applies("promote"):
            raise conflict(
                f'[signing] require = "promote" refuses push --alias {alias}: a new version is unsigned; push, '
                f"sign it (push --sign does both), then move the alias",
                setting="signing.require",
            )

    async def require(self, model: str, number: int, stage: Stage) -> None:
        """CONFLICT unless ``model:number`` has a signature an allowed signer made, by the current file
        (when ``[signing] require`` asks for one at this stage)."""
        if not self.applies(stage):
            return
        setting = f'[signing] require = "{self.section.require}"'
        texts = await asyncio.to_thread(self.registry.signature_texts, model, number)
        if not texts:
            raise conflict(
                f"{model}:{number} is unsigned and {setting} refuses to {_ACTION[stage]}; "
                f"sign it with `modeltui sign {model}:{number}`",
                setting="signing.require",
                version=f"{model}:{number}",
            )
        _, _, digest = await asyncio.to_thread(self.registry.resolve, f"{model}:{number}")
        checks: list[tuple[int, str, str | None]] = []
        verified = False
        for sid, text in texts:
            try:
                verdict = await asyncio.to_thread(self.checker.check, model, digest, text)
            except ProtocolError as exc:
                if exc.code is not ErrorCode.INVALID:
                    raise
                verdict = Verdict("not allowed", None)  # cannot happen for a recorded one; never counts
            checks.append((sid, verdict.status, verdict.principal))
            verified = verified or verdict.status == "verified"
        await asyncio.to_thread(self.registry.record_signature_checks, checks)
        self.on_checked(model)
        if not verified:
            where = self.section.allowed_signers or "no allowed-signers file ([signing] allowed_signers)"
            raise conflict(
                f"no signature of {model}:{number} is by a signer {where} allows, and {setting} refuses to "
                f"{_ACTION[stage]}",
                setting="signing.require",
                version=f"{model}:{number}",
            )
