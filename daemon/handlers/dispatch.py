"""Request type → the bound handler method, built from the handler objects; authorize, run, audit.

Handler classes mark methods with :func:`handles`; the :class:`Dispatcher` collects the marked methods of
the objects it is given and refuses to be built when a request type has no handler or two, so a daemon that
would answer UNKNOWN_OP to a request its clients know never starts.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from daemon.access import Access, describe
from daemon.audit import AuditStore
from daemon.protocol import requests as q
from daemon.protocol.access import allows
from daemon.protocol.errors import ErrorCode, ProtocolError
from daemon.server import Context, HandlerResult

log = logging.getLogger("modeltuid.handlers")

Handler = Callable[[Any, Context], Awaitable[HandlerResult]]
F = TypeVar("F", bound=Callable[..., Awaitable[HandlerResult]])
RequestType = type[q.BaseRequest[Any]]
#: the attribute :func:`handles` sets on a handler method: the request type it answers
MARK = "handles_request"


def handles(kind: RequestType) -> Callable[[F], F]:
    """Mark a handler method as the one that answers ``kind``."""

    def mark(fn: F) -> F:
        setattr(fn, MARK, kind)
        return fn

    return mark


class HandlerTableError(Exception):
    """The handler objects do not answer every request type exactly once."""


def handler_table(handlers: Iterable[object], request_types: Sequence[RequestType]) -> dict[RequestType, Handler]:
    """Every marked method of ``handlers``, bound, by the request type it answers."""
    table: dict[RequestType, Handler] = {}
    for obj in handlers:
        for name in dir(type(obj)):
            kind = getattr(getattr(type(obj), name), MARK, None)
            if kind is None:
                continue
            if kind in table:
                first = getattr(table[kind], "__qualname__", "?")
                raise HandlerTableError(f"two handlers for {kind.__name__}: {first} and {type(obj).__name__}.{name}")
            table[kind] = getattr(obj, name)
    missing = [t.__name__ for t in request_types if t not in table]
    if missing:
        raise HandlerTableError(f"no handler for {', '.join(missing)}")
    unknown = [t.__name__ for t in table if t not in request_types]
    if unknown:
        raise HandlerTableError(f"handlers for types that are not requests: {', '.join(unknown)}")
    return table


class Dispatcher:
    """Routes each request to its handler after checking the caller's role; audits what changes state."""

    def __init__(
        self,
        handlers: Iterable[object],
        access: Access,
        audit: AuditStore,
        request_types: Sequence[RequestType] = q.REQUEST_TYPES,
    ) -> None:
        self.table = handler_table(handlers, request_types)
        self.access = access
        self.audit = audit

    async def dispatch(self, request: Any, ctx: Context) -> HandlerResult:
        """Authorize (the request type's role against the caller's), run, and audit changes and refusals."""
        handler = self.table.get(type(request))
        if handler is None:
            raise ProtocolError(ErrorCode.UNKNOWN_OP, f"no handler for {type(request).__name__}")
        caller = ctx.caller
        needed = request.role
        role = self.access.role(caller.uid, caller.user, caller.groups)
        if not allows(role, needed):
            message = f"{request.op} needs the {needed} role; {caller.user} has {describe(role)}"
            await self._audit(request, ctx, ErrorCode.FORBIDDEN.value, message)
            raise ProtocolError(ErrorCode.FORBIDDEN, message, {"needs": needed, "role": role})
        if not request.changes_state:
            return await handler(request, ctx)
        try:
            result = await handler(request, ctx)
        except ProtocolError as exc:
            await self._audit(request, ctx, exc.code.value, exc.message)
            raise
        except Exception as exc:
            await self._audit(request, ctx, ErrorCode.INTERNAL.value, f"{type(exc).__name__}: {exc}")
            raise
        if request.audited(result):  # objects.put: the call that stores the object, not every chunk
            await self._audit(request, ctx, "ok", "")
        return result

    async def _audit(self, request: Any, ctx: Context, result: str, message: str) -> None:
        """Record it; a failing audit write is logged, never turned into the request's failure."""
        c = ctx.caller
        fields = request.model_dump(mode="json", exclude={"op"})
        try:
            await asyncio.to_thread(self.audit.record, uid=c.uid, user=c.user, pid=c.pid, op=request.op,
                                    fields=fields, result=result, message=message)  # fmt: skip
        except sqlite3.OperationalError as exc:  # a full disk or a busy database: said in one line
            log.warning("could not write the audit entry of %s by %s: %s", request.op, c.user, exc)
        except Exception:
            log.exception("could not write the audit entry of %s by %s", request.op, c.user)
