"""Deployment helpers shared by command modules: find the deployment a name or ref means (``predict``,
``feedback``) and wait for a deployment's next rollout (``rollback DEPLOYMENT``)."""

from __future__ import annotations

import asyncio
import os

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.events import Event
from daemon.protocol.names import parse_ref

from ..client import DaemonClient

#: a bearer token to send instead of asking the daemon for the deployment's (docs/security.md)
TOKEN_ENV = "MODELTUI_TOKEN"


async def endpoint_token(c: DaemonClient, name: str) -> str | None:
    """The token ``predict``/``feedback`` send to ``name``'s endpoint: ``$MODELTUI_TOKEN``, else, when the
    endpoint asks for one, the deployment's own from the daemon (operators; a viewer gets None and the
    endpoint's 401 says what is missing). Never printed."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    status = await c.call(q.DeploymentTokenStatus(name=name))
    if not status.required or not status.exists:
        return None
    try:
        return (await c.call(q.UseDeploymentToken(name=name))).token
    except ProtocolError as exc:
        if exc.code == ErrorCode.FORBIDDEN:
            return None
        raise


async def find_deployment(c: DaemonClient, target: str, *, with_token: bool = False) -> r.DeploymentDetail:
    """A deployment by name, else the running deployment of a ref (``NAME@ALIAS``, ``NAME:N``, ``NAME``); with
    ``with_token`` its ``token`` is what to send to its endpoint (:func:`endpoint_token`)."""
    detail = await _find(c, target)
    if with_token:
        detail = detail.model_copy(update={"token": await endpoint_token(c, detail.deployment.name)})
    return detail


async def _find(c: DaemonClient, target: str) -> r.DeploymentDetail:
    found = await c.call(q.ListDeployments())
    for d in found.items:
        if d.name == target:
            return r.DeploymentDetail(deployment=d)
    try:
        ref = parse_ref(target)
    except ValueError:
        ref = None
    if ref is not None:
        matches = [d for d in found.items if d.model == ref.name and d.endpoint]
        if ref.alias:
            matches = [d for d in matches if d.ref == target]
        elif ref.number:
            matches = [d for d in matches if d.version == ref.number]
        if matches:
            return r.DeploymentDetail(deployment=sorted(matches, key=lambda d: d.state != "running")[0])
    raise ProtocolError(
        ErrorCode.NOT_FOUND, f"no deployment serves {target!r}; deploy it first: modeltui deploy {target}"
    )


def rollout_waiter(c: DaemonClient, name: str) -> asyncio.Future[str]:
    """A future set to the message of deployment ``name``'s next finished (or failed) rollout; subscribe to
    "deployments" before moving the alias, or the event may pass unseen."""
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_event(event: Event) -> None:
        if (
            event.topic == "deployments"
            and event.deployment == name
            and event.kind == "rollout"
            and not event.message.startswith("rolling out")
            and not done.done()
        ):
            done.set_result(event.message)
            c.remove_listener(on_event)

    c.add_listener(on_event)
    return done
