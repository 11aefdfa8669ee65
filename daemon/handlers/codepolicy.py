"""``modeltui approve-code``: an admin approves running one version's code (docs/security.md, "Code-running
manifests and pickle files"); the policy itself is daemon/registry/codepolicy.py."""

from __future__ import annotations

import asyncio

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.registry.codepolicy import CodePolicy
from daemon.server import Context

from .changes import RegistryChanges
from .dispatch import handles


class CodePolicyHandlers:
    def __init__(self, policy: CodePolicy, changes: RegistryChanges) -> None:
        self.policy = policy
        self.changes = changes
        policy.on_recorded = changes.cache.invalidate  # a scan or an approval changes what show says

    @handles(q.ApproveCode)
    async def approve_code(self, req: q.ApproveCode, ctx: Context) -> r.CodeApprovalInfo:
        out = await asyncio.to_thread(self.policy.approve, req.ref, req.digest, req.reason, ctx.caller.user)
        self.changes.changed("version.tagged", out.model, out.version)  # subscribers re-read the version
        return out
