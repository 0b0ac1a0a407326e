"""Public messages under the two-person rule: the media centre drafts, an HQ leader (another
principal) approves; only then do the carriers' and media platforms' endpoints receive it."""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.api.common import gw, int_param, json_response, read_json, require
from gateway.api.errors import ApiError
from gateway.api.events import validation_error
from gateway.durations import parse_duration
from gateway.logs import get as get_logger
from gateway.planner import endpoint_key, new_delivery_id
from gateway.store.base import PlannedDelivery, UnknownEvent
from gateway.store.common import ts

if TYPE_CHECKING:
    from gateway.daemon import Gateway

routes = web.RouteTableDef()
log = get_logger("gateway.public")


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


async def _event(request: web.Request, event_id: str) -> dict[str, Any]:
    try:
        return await gw(request).store.get_event(event_id)
    except UnknownEvent as exc:
        raise ApiError(422, "unknown_event", f"no event {event_id}", field="$.event_id") from exc


@routes.post("/v1/public-messages")
async def request_public(request: web.Request) -> web.Response:
    principal = require(request, "public:request")
    try:
        draft = Draft.model_validate(await read_json(request))
    except ValidationError as exc:
        raise validation_error(exc) from exc
    g = gw(request)
    ev = await _event(request, draft.event_id)
    if ev["status"] != "actual":
        raise ApiError(422, "drill_not_public", "exercise and test events never reach public channels",
                       field="$.event_id")
    if ev["state"] in ("cancelled", "superseded"):
        raise ApiError(409, "event_not_active", f"event {draft.event_id} is {ev['state']}")
    policy = g.runtime.policy
    targets = [r.unit_id for r in await g.runtime.resolver.resolve(policy.model.public_targets.to_audience())]
    units = list(draft.units) or targets
    bad = [u for u in units if u not in targets]
    if bad:
        raise ApiError(422, "not_a_public_channel", f"not public channels: {', '.join(bad)}", field="$.units")
    now = time.time()
    pm: dict[str, Any] = {
        "id": "pm_" + secrets.token_hex(8), "event_id": draft.event_id, "text": draft.text, "channels": units,
        "requester": principal.name, "state": "pending_approval", "created_at": now,
        "expires_at": now + parse_duration(policy.model.public_draft_validity).total_seconds()}
    await g.store.insert_public(pm)
    g.metrics.public_messages.labels("pending_approval").inc()
    await g.audit(principal.name, "public_message_requested", pm["id"],
                  {"event_id": draft.event_id, "units": units})
    stored = await g.store.get_public(pm["id"])
    assert stored is not None
    return json_response(_view(stored), status=201)


async def _pending(request: web.Request) -> dict[str, Any]:
    pm = await gw(request).store.get_public(request.match_info["id"])
    if pm is None:
        raise ApiError(404, "not_found", f"no public message {request.match_info['id']}")
    if pm["state"] != "pending_approval":
        raise ApiError(409, "already_decided", f"the public message is {pm['state']}")
    return pm


@routes.post("/v1/public-messages/{id}/approve")
async def approve(request: web.Request) -> web.Response:
    principal = require(request, "public:approve")
    g = gw(request)
    pm = await _pending(request)
    if principal.name == pm["requester"]:
        raise ApiError(403, "two_person_rule",
                       "the requester cannot approve its own public message: a second HQ leader must approve")
    ev = await _event(request, pm["event_id"])
    allowed = g.runtime.policy.model.public_approvers.get(ev["level"] or "", ())
    if allowed and principal.name not in allowed:
        raise ApiError(403, "approver_level",
                       f"a {ev['level']} warning's public message must be approved by: {', '.join(allowed)}")
    if pm["expires_at"] < time.time():
        raise ApiError(409, "already_decided", "the draft has expired")
    if not await g.store.decide_public(pm["id"], to_state="approved", by=principal.name, reason=None,
                                       at=time.time(), dispatch_event_id=pm["event_id"]):
        raise ApiError(409, "already_decided", "the public message was decided meanwhile")
    added = await g.store.add_deliveries(pm["event_id"], public_deliveries(g, pm, ev), now=time.time())
    g.dispatcher.wake()
    g.metrics.public_messages.labels("approved").inc()
    await g.audit(principal.name, "public_message_approved", pm["id"], {"deliveries": len(added)})
    log.info("public_message_approved", public_message_id=pm["id"], approver=principal.name, deliveries=len(added))
    return await _answer(request, pm["id"])


def public_deliveries(g: Gateway, pm: dict[str, Any], ev: dict[str, Any], round_: int = 0) -> list[PlannedDelivery]:
    """Webhook deliveries of an approved public message to its units' platforms; `round_` > 0
    is a periodic re-broadcast (its own cause ids, so each round goes out once)."""
    payload = json.dumps({"public_message": {"id": pm["id"], "event_id": pm["event_id"], "text": pm["text"],
                                             "level": ev["level"], "approved_by": "hq"}}, ensure_ascii=False)
    out = []
    for uid in pm["channels"]:
        unit = g.runtime.roster.units.get(uid)
        if unit is None:
            continue
        for c in unit.contacts:
            if c.kind != "url" or "webhook" not in g.channels:
                continue
            out.append(PlannedDelivery(
                id=new_delivery_id(), unit_id=uid, unit_name=unit.name, channel="webhook", address=c.address,
                endpoint_key=endpoint_key("webhook", c.address), text=pm["text"], payload=payload,
                max_attempts=g.runtime.policy.max_attempts("webhook"), priority=0,
                deadline=time.time() + g.runtime.policy.horizon.total_seconds(),
                cause_id=f"{pm['id']}:{uid}:{c.address}" + (f":r{round_}" if round_ else ""),
            ))
    return out


@routes.post("/v1/public-messages/{id}/reject")
async def reject(request: web.Request) -> web.Response:
    principal = require(request, "public:approve")
    try:
        decision = Decision.model_validate(await read_json(request))
    except ValidationError as exc:
        raise validation_error(exc) from exc
    if not decision.reason:
        raise ApiError(422, "reason_required", "a rejection needs a reason", field="$.reason")
    g = gw(request)
    pm = await _pending(request)
    if not await g.store.decide_public(pm["id"], to_state="rejected", by=principal.name, reason=decision.reason,
                                       at=time.time()):
        raise ApiError(409, "already_decided", "the public message was decided meanwhile")
    g.metrics.public_messages.labels("rejected").inc()
    await g.audit(principal.name, "public_message_rejected", pm["id"], {"reason": decision.reason})
    return await _answer(request, pm["id"])


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
