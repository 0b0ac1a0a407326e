"""The /sandbox/ control and inspection API, for tests, benchmarks and people."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.sandbox.lifecycle import NoGather

if TYPE_CHECKING:
    from gateway.sandbox.server import Sandbox


def add_control_routes(app: web.Application, sandbox: Sandbox) -> None:
    """Register GET stats/messages/config, POST config/reset/calls/{sid}/press on `app`."""
    handlers = _Control(sandbox)
    app.router.add_get("/sandbox/stats", handlers.stats)
    app.router.add_get("/sandbox/config", handlers.get_config)
    app.router.add_post("/sandbox/config", handlers.set_config)
    app.router.add_get("/sandbox/messages", handlers.messages)
    app.router.add_post("/sandbox/reset", handlers.reset)
    app.router.add_post("/sandbox/calls/{sid}/press", handlers.press)


class _Control:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._sandbox.stats.snapshot())

    async def get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self._sandbox.config.public())

    async def set_config(self, request: web.Request) -> web.Response:
        """Body: a JSON object of SandboxConfig fields (plus `seed`); 400 on any bad one."""
        changes = await _json_object(request)
        try:
            config = self._sandbox.update_config(changes)
        except ValueError as exc:
            raise _json_error(web.HTTPBadRequest, str(exc)) from exc
        return web.json_response(config.public())

    async def messages(self, request: web.Request) -> web.Response:
        """Newest last; `?limit=N` (default 100) and `?kind=messages|calls`."""
        try:
            limit = max(0, int(request.query.get("limit", "100")))
        except ValueError as exc:
            raise _json_error(web.HTTPBadRequest, "limit must be an integer") from exc
        kind = request.query.get("kind")
        records = [r for r in self._sandbox.records.values() if kind is None or r.kind == kind]
        return web.json_response([r.public() for r in records[-limit:]] if limit else [])

    async def reset(self, request: web.Request) -> web.Response:
        """Forget counters and callback records (records of messages stay: calls may be live)."""
        self._sandbox.stats.reset()
        self._sandbox.callbacks.clear()
        return web.json_response({"reset": True})

    async def press(self, request: web.Request) -> web.Response:
        """Body (optional JSON): {"digits": "1"}. Answers with the Gather action's reply."""
        body = await _json_object(request) if request.can_read_body else {}
        digits = str(body.get("digits", "1"))
        sid = request.match_info["sid"]
        try:
            record = await self._sandbox.press(sid, digits)
        except KeyError as exc:
            raise _json_error(web.HTTPNotFound, f"no call {sid}") from exc
        except NoGather as exc:
            raise _json_error(web.HTTPConflict, f"call {sid} has no Gather action") from exc
        return web.json_response(
            {"url": record.url, "status": record.status, "error": record.error, "response": record.response_text}
        )


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _json_error(web.HTTPBadRequest, "body must be JSON") from exc
    if not isinstance(body, dict):
        raise _json_error(web.HTTPBadRequest, "body must be a JSON object")
    return body


def _json_error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": message}), content_type="application/json")
