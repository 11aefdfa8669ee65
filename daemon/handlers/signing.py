"""Signed versions: ``versions.sign`` records a signature the daemon has checked (daemon/registry/signing.py)."""

from __future__ import annotations

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.registry.signing import SigningPolicy
from daemon.server import Context

from .changes import RegistryChanges
from .dispatch import handles


class SigningHandlers:
    def __init__(self, signing: SigningPolicy, changes: RegistryChanges) -> None:
        self.signing = signing
        self.changes = changes

    @handles(q.SignVersion)
    async def sign(self, req: q.SignVersion, ctx: Context) -> r.SignResult:
        out = await self.signing.sign(req, ctx.caller.user)
        self.changes.changed("version.signed", out.version.model, out.version.number)
        return out
