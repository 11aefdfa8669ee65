"""The cluster's status (hosts, their deployments, leaders, how fresh the view is)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.server import Context

from .dispatch import handles

if TYPE_CHECKING:
    from daemon.cluster.service import Cluster


class ClusterHandlers:
    """``cluster``: None when no cluster is configured (the status says it is disabled)."""

    def __init__(self, cluster: Cluster | None) -> None:
        self.cluster = cluster

    @handles(q.ClusterStatusRequest)
    async def cluster_status(self, req: q.ClusterStatusRequest, ctx: Context) -> r.ClusterStatus:
        if self.cluster is None:
            return r.ClusterStatus(enabled=False)
        return await asyncio.to_thread(self.cluster.status)
