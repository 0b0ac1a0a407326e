"""Sign-off (签发) of warnings over HTTP: `POST /v1/events/{id}/sign` and `…/reject` (scope
`events:sign`), `GET /v1/signoffs` (drafts awaiting a signature, with what each unit will
receive). The rules are in `gateway.flows.signoff.SignOff`."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.acklinks import BadLink
from gateway.api.common import gw, int_param, json_response, read_json, require
from gateway.api.errors import ApiError
from gateway.flows.errors import validation_error
from gateway.store import signoffs as so

routes = web.RouteTableDef()
STATES = ("pending", "signed", "released", "rejected", "expired", "cancelled")


class Sign(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    ref: str | None = Field(default=None, max_length=100)  # 文号 of the signed release, if any


class Reject(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field(min_length=1, max_length=500)


async def _body(request: web.Request, model: type[BaseModel], *, optional: bool) -> Any:
    """Raises ApiError 400/415 or Invalid 422 for a bad body; an empty one is allowed when `optional`."""
    if optional and not await request.read():
        return model()
    try:
        return model.model_validate(await read_json(request))
    except ValidationError as exc:
        raise validation_error(exc) from exc


def _answer(event_id: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event_id, "signoff": so.view(row), "links": {"self": f"/v1/events/{event_id}"}}


@routes.post("/v1/events/{id}/sign")
async def sign(request: web.Request) -> web.Response:
    principal = require(request, "events:sign")
    body = await _body(request, Sign, optional=True)
    row = await gw(request).signoff.sign(request.match_info["id"], principal=principal.name, ref=body.ref)
    return json_response(_answer(request.match_info["id"], row))


@routes.post("/v1/events/{id}/reject")
async def reject(request: web.Request) -> web.Response:
    principal = require(request, "events:sign")
    body = await _body(request, Reject, optional=False)
    row = await gw(request).signoff.reject(request.match_info["id"], principal=principal.name, reason=body.reason)
    return json_response(_answer(request.match_info["id"], row))


@routes.get("/v1/signoffs")
async def list_signoffs(request: web.Request) -> web.Response:
    require(request, "events:read")
    state = request.query.get("state")
    if state is not None and state not in STATES:
        raise ApiError(400, "bad_parameter", f"state must be one of {', '.join(STATES)}", field="state")
    limit = int_param(request, "limit", 50, 1, 200)
    g = gw(request)
    out = []
    for row in await g.store.list_signoffs(state=state, limit=limit):
        ev = await g.store.get_event(row["event_id"])
        out.append({**(so.view(row) or {}), "event_id": row["event_id"], "type": ev["type"],
                    "headline": ev["headline"], "accepted_at": ev["accepted_at"],
                    "signers": list(g.signoff.signers(row["level"])), "messages": messages(ev)})
    return json_response({"signoffs": out})


@routes.get("/s/{token}")
async def sign_page(request: web.Request) -> web.Response:
    """The signed link in a sign request: opens the draft in the console. It never signs: the
    console still asks for the signer's token."""
    g = gw(request)
    try:
        delivery_id = g.links.verify(request.match_info["token"], time.time())
    except BadLink as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    row = await g.store.delivery(delivery_id=delivery_id)
    if row is None:
        raise ApiError(404, "not_found", "this link names no sign request")
    raise web.HTTPFound(f"/#signoff/{row['event_id']}")


def messages(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """What each unit will receive once the draft is signed (its held deliveries)."""
    return [{"unit_id": d["unit_id"], "unit_name": d["unit_name"], "channel": d["channel"], "text": d["text"]}
            for d in ev["deliveries"] if d["status"] == "held"]


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI description of these routes (merged into `/openapi.json`)."""
    err = {str(c): {"$ref": f"#/components/responses/E{c}"} for c in (400, 401, 403, 404, 409, 415, 422)}
    sec: list[dict[str, list[str]]] = [{"bearer": []}]
    ev_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "event id"}
    view = {"type": "object", "properties": {
        "state": {"enum": list(STATES)}, "level": {"type": ["string", "null"]}, "submitter": {"type": "string"},
        "asked": {"type": "array", "items": {"type": "string"}}, "decided_by": {"type": ["string", "null"]},
        "decided_at": {"type": ["string", "null"]}, "ref": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]}, "created_at": {"type": "string"},
        "expires_at": {"type": "string"}, "notice_step": {"type": "integer"}}, "required": ["state", "submitter"]}
    answer = {"description": "the sign-off", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"event_id": {"type": "string"}, "signoff": view,
                                         "links": {"type": "object"}}, "required": ["event_id", "signoff"]}}}}

    def body(props: dict[str, Any], required: list[str], needed: bool) -> dict[str, Any]:
        return {"required": needed, "content": {"application/json": {"schema": {
            "type": "object", "properties": props, "required": required, "additionalProperties": False}}}}

    return {
        "/v1/events/{id}/sign": {"post": {
            "operationId": "signEvent", "summary": "An HQ leader signs (签发) a warning held for sign-off: its "
            "deliveries go out from now. Another principal than the submitter (403 `two_person_rule`), listed "
            "for the level (403 `not_a_signer`); signing twice changes nothing (scope `events:sign`)",
            "security": sec, "parameters": [ev_id],
            "requestBody": body({"ref": {"type": "string", "maxLength": 100, "description": "文号"}}, [], False),
            "responses": {"200": answer, **err}}},
        "/v1/events/{id}/reject": {"post": {
            "operationId": "rejectEvent", "summary": "Reject a warning held for sign-off, with a reason: nothing "
            "is sent (scope `events:sign`)", "security": sec, "parameters": [ev_id],
            "requestBody": body({"reason": {"type": "string", "minLength": 1, "maxLength": 500}}, ["reason"], True),
            "responses": {"200": answer, **err}}},
        "/s/{token}": {"get": {
            "operationId": "signLink", "summary": "Signed link in a sign request: redirects to the console's sign "
            "page for the draft (signing still needs the signer's token)", "security": [],
            "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"302": {"description": "to the console's sign page"}, "404": err["404"]}}},
        "/v1/signoffs": {"get": {
            "operationId": "listSignoffs", "summary": "Warnings awaiting (or past) sign-off, newest first, with "
            "the signers and what each unit will receive (scope `events:read`)", "security": sec,
            "parameters": [
                {"name": "state", "in": "query", "required": False, "schema": {"enum": list(STATES)}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 200}}],
            "responses": {"200": {"description": "sign-offs", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"signoffs": {"type": "array", "items": {"type": "object"}}},
                "required": ["signoffs"]}}}}, **{k: v for k, v in err.items() if k in ("400", "401", "403")}}}},
    }

