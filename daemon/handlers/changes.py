"""Where every change to a model ends: cached reads of it dropped, subscribers told, deployments rolled."""

from __future__ import annotations

from daemon.deploy.manager import DeploymentManager
from daemon.protocol.events import RegistryEvent
from daemon.readcache import ReadCache
from daemon.server import EventHub

#: What the cluster mirror and maintenance say changed → the registry event subscribers get.
EVENT_OF = {
    "version": "version.pushed",
    "alias": "alias.moved",
    "history": "alias.moved",
    "tag": "version.tagged",
    "describe": "model.described",
}


class RegistryChanges:
    """The registry's change events, given to the handlers, the cluster mirror and maintenance."""

    def __init__(self, cache: ReadCache, hub: EventHub, deployments: DeploymentManager) -> None:
        self.cache = cache
        self.hub = hub
        self.deployments = deployments

    def changed(self, kind: str, model: str, version: int | None = None, alias: str | None = None) -> None:
        """Drop cached reads of ``model``, then tell subscribers; an alias move may roll deployments out."""
        self.cache.invalidate(model)
        event = {"kind": kind, "model": model, "version": version, "alias": alias}
        self.hub.publish(RegistryEvent.model_validate(event))
        if kind == "alias.moved" and alias is not None:
            self.deployments.alias_moved(model, alias, version)

    def stored(self, what: str, model: str, version: int | None, alias: str | None) -> None:
        """A change made outside a request (mirrored from the cluster, or by a maintenance run), named by
        what was stored: ``version``, ``alias``, ``history``, ``tag`` or ``describe``."""
        self.changed(EVENT_OF[what], model, version, alias)
