"""`/v1/events`: submit, list, show, cancel; `/v1/roster`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.api.common import gw, int_param, json_response, read_json, require
from gateway.api.errors import ApiError
from gateway.api.schemas import EVENT_STATES
from gateway.events import Event
from gateway.flows.errors import validation_error
from gateway.store.base import UnknownEvent

routes = web.RouteTableDef()


def parse_event(data: Any) -> Event:
    """Raises ApiError 422 for content that is JSON but not a valid event."""
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_event", "the event must be a JSON object", field="$")
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc


@routes.post("/v1/events")
async def post_event(request: web.Request) -> web.Response:
    principal = require(request, "events:write")
    event = parse_event(await read_json(request))
    status, answer = await gw(request).intake.submit(event, source="api", principal=principal.name)
    return json_response(answer, status=status)


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    require(request, "events:read")
    status = request.query.get("status")
    if status is not None and status not in EVENT_STATES:
        raise ApiError(400, "bad_parameter", f"status must be one of {', '.join(EVENT_STATES)}", field="status")
    limit = int_param(request, "limit", 50, 1, 500)
    return json_response({"events": await gw(request).store.list_events(status=status, limit=limit)})


@routes.get("/v1/events/{id}")
async def get_event(request: web.Request) -> web.Response:
    require(request, "events:read")
    try:
        return json_response(await gw(request).store.get_event(request.match_info["id"]))
    except UnknownEvent as exc:
        raise ApiError(404, "not_found", f"no event {request.match_info['id']}") from exc


@routes.post("/v1/events/{id}/cancel")
async def cancel_event(request: web.Request) -> web.Response:
    principal = require(request, "events:write")
    event_id = request.match_info["id"]
    try:
        n = await gw(request).cancel(event_id, by=principal.name)
    except UnknownEvent as exc:
        raise ApiError(404, "not_found", f"no event {event_id}") from exc
    return json_response({"event_id": event_id, "cancelled": n})


@routes.get("/v1/roster")
async def get_roster(request: web.Request) -> web.Response:
    require(request, "events:read")
    roster = gw(request).runtime.roster
    return json_response({"version": roster.version, "warnings": list(roster.warnings),
                          "units": roster.to_json()})
