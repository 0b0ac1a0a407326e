"""`GET /v1/stream`: server-sent events for the console's live board (scope events:read).

Auth: `Authorization: Bearer <token>`, or `?token=<token>` because a browser's EventSource
cannot set headers. The daemon writes no access log and never logs a query string, so the token
stays out of the logs; a reverse proxy in front must not log the query of this path either.

Messages (`event:` name, JSON `data:`), each sent on connect and again only when it changed:
- `meta`   role and working-group names, channels, escalation steps (once)
- `chains` active events (heads of the warning chains) and the most recent ones
- `event`  with `?event=<id>`: that event's head, summary, units (ack state, escalation step)
           and deliveries
- `ops`    queue depth, oldest pending and up/down per channel, failures

The handler polls the store every `POLL_SECONDS`: simple, and it needs no hook in the store or
the dispatcher; the diff against the last message keeps the wire quiet when nothing changes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from gateway.api.common import gw
from gateway.api.errors import ApiError
from gateway.console import snapshots
from gateway.console.pages import authenticate
from gateway.logs import get as get_logger
from gateway.store.base import UnknownEvent

routes = web.RouteTableDef()
log = get_logger("gateway.api.stream")

POLL_SECONDS = 0.5
OPS_EVERY = 4  # ticks: the ops view reads more and changes less
RETRY_MS = 3000  # how soon a browser reconnects after a drop


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _gone(request: web.Request) -> bool:
    # aiohttp does not cancel a handler when its client leaves; a quiet stream would never
    # notice through a failed write, so look at the transport each tick
    transport = request.transport
    return transport is None or transport.is_closing()


@routes.get("/v1/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """The live stream.

    Raises:
        ApiError: 401 without a valid token, 403 without events:read, 400 for a bad `event`,
        404 for an unknown one (all before the stream starts, in the contract's error shape).
    """
    principal = authenticate(request, "events:read", allow_query=True)
    g = gw(request)
    event_id = request.query.get("event", "").strip() or None
    if event_id is not None:
        if len(event_id) > 128:
            raise ApiError(400, "bad_parameter", "event must be at most 128 characters", field="event")
        try:
            await g.store.get_event(event_id)
        except UnknownEvent as exc:
            raise ApiError(404, "not_found", f"no event {event_id}") from exc

    views: list[tuple[str, int, Callable[[], Awaitable[dict[str, Any]]]]] = [
        ("chains", 1, lambda: snapshots.chains(g)), ("ops", OPS_EVERY, lambda: snapshots.ops(g))]
    if event_id is not None:
        eid = event_id
        views.insert(1, ("event", 1, lambda: snapshots.event(g, eid)))

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    async with sse_response(request, headers=headers) as resp:
        await resp.send(_dumps(snapshots.meta(g, principal.name)), event="meta", retry=RETRY_MS)
        await _pump(request, resp, views)
    return resp


async def _pump(request: web.Request, resp: EventSourceResponse,
                views: list[tuple[str, int, Callable[[], Awaitable[dict[str, Any]]]]]) -> None:
    """Send each view when it changed, until the client leaves or the gateway stops (it clears
    `ready` first on SIGTERM, so open consoles never hold up a graceful shutdown)."""
    g = gw(request)
    last: dict[str, str] = {}
    tick = 0
    while getattr(g, "ready", False) and not _gone(request):
        for name, every, build in views:
            if tick % every:
                continue
            try:
                text = _dumps(await build())
            except Exception:
                # a store hiccup must not end an operator's live view; the next tick retries
                log.exception("stream_view_failed", view=name)
                continue
            if last.get(name) != text:
                try:
                    await resp.send(text, event=name)
                except (ConnectionError, RuntimeError, TimeoutError):
                    return  # the client went away mid-write
                last[name] = text
        tick += 1
        await asyncio.sleep(POLL_SECONDS)
