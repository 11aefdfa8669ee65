"""Deployment helpers shared by command modules: find the deployment a name or ref means (``predict``,
``feedback``) and wait for a deployment's next rollout (``rollback DEPLOYMENT``)."""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.protocol.events import Event
from daemon.protocol.names import parse_ref

from ..client import DaemonClient

#: a bearer token to send instead of asking the daemon for the deployment's (docs/security.md)
TOKEN_ENV = "MODELTUI_TOKEN"


@dataclass(frozen=True)
class EndpointAccess:
    """What ``predict``/``feedback`` need to reach a deployment's endpoint: the bearer token to send (None:
    none) and, for an https endpoint, the TLS context that trusts exactly the certificate it presents."""

    token: str | None = None
    tls: ssl.SSLContext | None = None


def pinned_context(pem: str) -> ssl.SSLContext:
    """Trust exactly this certificate (self-signed or a CA's leaf: partial chains allowed); the host name is
    not checked, as the endpoint is addressed as 127.0.0.1 whatever name the certificate carries."""
    ctx = ssl.create_default_context(cadata=pem)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.check_hostname = False
    return ctx


async def endpoint_access(c: DaemonClient, name: str) -> EndpointAccess:
    """The token: ``$MODELTUI_TOKEN``, else, when the endpoint asks for one, the deployment's own from the
    daemon (operators; a viewer gets None and the endpoint's 401 says what is missing); never printed. The
    TLS context from the certificate the daemon's ``[serving] tls_cert`` names."""
    status = await c.call(q.DeploymentTokenStatus(name=name))
    tls = pinned_context(status.tls_cert_pem) if status.tls_cert_pem else None
    if os.environ.get(TOKEN_ENV):
        return EndpointAccess(os.environ[TOKEN_ENV], tls)
    if not status.required or not status.exists:
        return EndpointAccess(None, tls)
    try:
        token = (await c.call(q.UseDeploymentToken(name=name))).token
    except ProtocolError as exc:
        if exc.code != ErrorCode.FORBIDDEN:
            raise
        token = None
    return EndpointAccess(token, tls)


async def find_deployment(c: DaemonClient, target: str) -> r.DeploymentDetail:
    """A deployment by name, else the running deployment of a ref (``NAME@ALIAS``, ``NAME:N``, ``NAME``)."""
    return await _find(c, target)


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
