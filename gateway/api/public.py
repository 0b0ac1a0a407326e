"""`/v1/public-messages`: the HTTP side of public messages; the two-person rule and the
deliveries are in `gateway.flows.public`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.api.common import gw, int_param, json_response, read_json, require
from gateway.api.errors import ApiError
from gateway.flows.errors import validation_error
from gateway.store.common import ts

routes = web.RouteTableDef()


class Draft(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    event_id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=500)
    units: tuple[str, ...] = ()  # a subset of the policy's public targets; default all of them


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field(default="", max_length=500)


def _view(pm: dict[str, Any], deliveries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": pm["id"], "event_id": pm["event_id"], "text": pm["text"], "units": pm["channels"],
        "state": pm["state"], "requester": pm["requester"], "approver": pm["approver"], "reason": pm["reason"],
        "created_at": ts(pm["created_at"]), "expires_at": ts(pm["expires_at"]), "decided_at": ts(pm["decided_at"]),
        "deliveries": deliveries or [],
    }


@routes.post("/v1/public-messages")
async def request_public(request: web.Request) -> web.Response:
    principal = require(request, "public:request")
    try:
        draft = Draft.model_validate(await read_json(request))
    except ValidationError as exc:
        raise validation_error(exc) from exc
    pm_id = await gw(request).public.request(principal=principal.name, event_id=draft.event_id,
                                             text=draft.text, units=draft.units)
    stored = await gw(request).store.get_public(pm_id)
    assert stored is not None
    return json_response(_view(stored), status=201)


@routes.post("/v1/public-messages/{id}/approve")
async def approve(request: web.Request) -> web.Response:
    principal = require(request, "public:approve")
    await gw(request).public.approve(request.match_info["id"], principal=principal.name)
    return await _answer(request, request.match_info["id"])


@routes.post("/v1/public-messages/{id}/reject")
async def reject(request: web.Request) -> web.Response:
    principal = require(request, "public:approve")
    try:
        decision = Decision.model_validate(await read_json(request))
    except ValidationError as exc:
        raise validation_error(exc) from exc
    await gw(request).public.reject(request.match_info["id"], principal=principal.name, reason=decision.reason)
    return await _answer(request, request.match_info["id"])


async def _answer(request: web.Request, pm_id: str) -> web.Response:
    g = gw(request)
    pm = await g.store.get_public(pm_id)
    if pm is None:
        raise ApiError(404, "not_found", f"no public message {pm_id}")
    ev = await g.store.get_event(pm["event_id"])
    mine = [d for d in ev["deliveries"] if (d.get("cause_id") or "").startswith(pm_id + ":")]
    return json_response(_view(pm, mine))


@routes.get("/v1/public-messages")
async def list_public(request: web.Request) -> web.Response:
    require(request, "events:read")
    state = request.query.get("state")
    if state is not None and state not in ("pending_approval", "approved", "rejected", "expired"):
        raise ApiError(400, "bad_parameter", "state must be pending_approval, approved, rejected or expired",
                       field="state")
    limit = int_param(request, "limit", 50, 1, 500)
    rows = await gw(request).store.list_public(state=state, limit=limit)
    return json_response({"public_messages": [_view(pm) for pm in rows]})


@routes.get("/v1/public-messages/{id}")
async def get_public(request: web.Request) -> web.Response:
    require(request, "events:read")
    return await _answer(request, request.match_info["id"])
