"""A change the cluster mirror or maintenance stored reaches clients, the read cache and the deployments."""

from __future__ import annotations

from typing import cast

import pytest

from daemon.deploy.manager import DeploymentManager
from daemon.handlers.changes import RegistryChanges
from daemon.protocol.events import Event, RegistryEvent
from daemon.readcache import ReadCache
from daemon.server import EventHub


class RecordingHub(EventHub):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[Event] = []

    def publish(self, event: Event) -> None:
        self.published.append(event)


class AliasMoves:
    """What the deployment manager is told: (model, alias, version) of each alias move."""

    def __init__(self) -> None:
        self.moves: list[tuple[str, str, int | None]] = []

    def alias_moved(self, model: str, alias: str, version: int | None) -> None:
        self.moves.append((model, alias, version))


@pytest.mark.parametrize(
    ("what", "kind"),
    [("version", "version.pushed"), ("alias", "alias.moved"), ("history", "alias.moved"),
     ("tag", "version.tagged"), ("describe", "model.described")],
)  # fmt: skip
def test_a_stored_change_is_published_and_drops_cached_reads_of_its_model(what: str, kind: str) -> None:
    cache, hub, deployments = ReadCache(), RecordingHub(), AliasMoves()
    cache.put(b"log churn", cache.snapshot(["churn"]), b"v1")
    cache.put(b"log fraud", cache.snapshot(["fraud"]), b"f1")
    changes = RegistryChanges(cache, hub, cast(DeploymentManager, deployments))
    changes.stored(what, "churn", 3, "production" if kind == "alias.moved" else None)
    assert cache.get(b"log churn", ["churn"]) is None
    assert cache.get(b"log fraud", ["fraud"]) == b"f1"
    assert [(e.kind, e.model) for e in hub.published if isinstance(e, RegistryEvent)] == [(kind, "churn")]
    assert deployments.moves == ([("churn", "production", 3)] if kind == "alias.moved" else [])
