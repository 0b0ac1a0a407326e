"""`GET /openapi.json`: the OpenAPI 3.1 description of design.md section 5, built once in Python;
its component schemas come from the pydantic models (gateway/api/schemas.py).

tests/test_openapi.py keeps it true: every route the app registers is described here, and
schemathesis fuzzes the live daemon against it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

from gateway.api.openapi_parts import (
    BEARER,
    BODY_ERRORS,
    CAP_TYPES,
    ERRORS,
    INT,
    TIME,
    array,
    content,
    json_body,
    nullable,
    obj,
    ok,
    op,
    path_param,
    query_param,
    ref,
    string,
)
from gateway.api.reports_openapi import _schemas as report_schemas
from gateway.api.reports_openapi import paths as report_paths
from gateway.api.schemas import EVENT_STATES, component_schemas
from gateway.api.signoff import openapi_paths as signoff_paths
from gateway.providers.callbacks import openapi_paths as provider_paths

routes = web.RouteTableDef()

_EVENT_EXAMPLE = {"type": "warning.issued", "level": "orange", "valid_from": "2026-11-28T12:00:00+08:00",
                  "valid_until": None, "headline": "橙色预警", "body": "请落实响应措施"}
_CAP_EXAMPLE = (
    '<?xml version="1.0" encoding="UTF-8"?><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
    "<identifier>14052500000000_20261128100000_1</identifier><sender>zzhpw@140525.gov.cn</sender>"
    "<sent>2026-11-28T10:00:00+08:00</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>"
    "<info><language>zh-CN</language><category>Env</category><event>重污染天气预警</event>"
    "<urgency>Expected</urgency><severity>Severe</severity><certainty>Likely</certainty>"
    "<headline>泽州县启动橙色(Ⅱ级)重污染天气预警</headline><parameter><valueName>预警级别</valueName>"
    "<value>橙色</value></parameter><area><areaDesc>泽州县</areaDesc></area></info></alert>")
_AM_EXAMPLE = {"version": "4", "status": "firing", "receiver": "gateway", "groupKey": '{}:{alertname="AQIHigh"}',
               "alerts": [{"status": "firing", "labels": {"alertname": "AQIHigh", "level": "orange"},
                           "annotations": {"summary": "AQI超过200"}, "startsAt": "2026-11-28T02:00:00Z",
                           "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "3f2a9c0d1e4b5a67"}]}


_EVENT_ID = path_param("id", "event id")


def _events() -> dict[str, Any]:
    accepted = ok("accepted: the event and all its deliveries are durable", ref("EventAccepted"))
    replay = ok("identical replay of an earlier submission: the first answer, nothing re-sent",
                 ref("EventAccepted"))
    return {
        "/v1/events": {
            "post": op("submitEvent", "Submit an event", {202: accepted, 200: replay}, scope="events:write",
                        body=json_body("Event", example=_EVENT_EXAMPLE), errors=(*BODY_ERRORS, 409)),
            "get": op("listEvents", "List events, newest first", {200: ok("events", obj(
                {"events": array(ref("EventSummary"))}, ("events",)))}, scope="events:read", errors=(400,),
                params=[query_param("status", {"enum": list(EVENT_STATES)}),
                        query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50})]),
        },
        "/v1/events/{id}": {"get": op("getEvent", "An event with delivery summary, units and deliveries",
                                       {200: ok("the event", ref("EventDetail"))}, scope="events:read",
                                       params=[_EVENT_ID], errors=(404,))},
        "/v1/events/{id}/cancel": {"post": op(
            "cancelEvent", "Cancel what is still pending", {200: ok("cancelled", obj(
                {"event_id": string(), "cancelled": INT}, ("event_id", "cancelled")))},
            scope="events:write", params=[_EVENT_ID], errors=(404,))},
        "/v1/events/{id}/cap": {"get": op(
            "getEventCap", "The event as CAP 1.2 XML (GB/T 35965.1 identifier)",
            {200: ok("a CAP 1.2 alert", string(), "application/cap+xml")}, scope="events:read",
            params=[_EVENT_ID], errors=(404,))},
        "/v1/intake/cap": {"post": op(
            "intakeCap", "CAP 1.2, 1.1 or 1.0 XML, signed or not -> event; hostile XML 400 `hostile_xml`, "
            "schema-invalid 422 `invalid_cap`, 422 `bad_signature`, `signature_required`, `not_our_area`, "
            "`not_our_event`; 200 for a replay or a Cancel of a message never received (nothing sent)",
            {202: accepted, 200: replay}, scope="events:write", errors=(*BODY_ERRORS, 409),
            body={"required": True, "content": content(string(), *CAP_TYPES, example=_CAP_EXAMPLE)})},
        "/v1/intake/alertmanager": {"post": op(
            "intakeAlertmanager", "Alertmanager webhook payload version 4 -> events (Bearer or Basic auth, "
            "the password being a token)", {202: ok("at least one event created", ref("AlertmanagerResult")),
                                             200: ok("nothing new (replays, ignored)",
                                                      ref("AlertmanagerResult"))},
            scope="events:write", security=[{"bearer": []}, {"basic": []}],
            body=json_body("AlertmanagerPayload", example=_AM_EXAMPLE),
            errors=BODY_ERRORS)},
        "/v1/roster": {"get": op("getRoster", "Units with roles, groups, contacts, persons (numbers masked) and "
                                  "duty schedules", {200: ok("the roster", obj(
            {"version": string(), "warnings": array(string()), "units": array({"type": "object"})},
            ("version", "units")))}, scope="events:read"),
            "put": op("putRoster", "Replace the directory: the office's sheet (XLSX or CSV: persons and duty "
                       "schedules) or roster YAML (everything), checked whole; 422 lists every problem with "
                       "its sheet, row and column, and nothing changes", {200: ok("the revision in force", obj(
                           {"revision": INT, "version": string(), "changed": {"type": "boolean"},
                            "changes": {"type": "object"}}, ("revision", "version", "changed"))),
                           422: ok("refused, nothing changed: every problem listed", _ROSTER_PROBLEMS)},
                       scope="roster:write", params=[_ROSTER_FORMAT],
                       body={"required": True, "content": content(string(), *_ROSTER_TYPES)},
                       errors=(400, 409, 413, 415))},
        "/v1/roster/export": {"get": op(
            "exportRoster", "The directory in the shape it is imported in, numbers in full (default xlsx)",
            {200: ok("the file", {}, *_ROSTER_TYPES)}, scope="roster:write", params=[_ROSTER_FORMAT],
            errors=(400,))},
    }


_ROSTER_TYPES = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "text/csv",
                 "application/yaml")
_ROSTER_FORMAT = query_param("format", {"type": "string", "enum": ["xlsx", "csv", "yaml"]})
# the contract's error shape, with the import's problems beside code and message
_ROSTER_PROBLEMS = obj({"error": obj({
    "code": string(pattern="^[a-z0-9_]+$"), "message": string(), "field": string(),
    "problems": array(obj({"sheet": string(), "row": {"type": ["integer", "null"]},
                             "column": {"type": ["string", "null"]}, "message": string()},
                            ("sheet", "message")))}, ("code", "message"), closed=True)}, ("error",), closed=True)


def _public() -> dict[str, Any]:
    pm = ok("the public message", ref("PublicMessage"))
    pm_id = path_param("id", "public message id")
    return {
        "/v1/public-messages": {"post": op(
            "requestPublicMessage", "Media centre drafts a public message for an event",
            {201: ok("pending_approval", ref("PublicMessage"))}, scope="public:request",
            body=json_body("PublicMessageRequest"), errors=(*BODY_ERRORS, 409)), "get": op(
            "listPublicMessages", "Public messages, newest first (e.g. the drafts awaiting approval)",
            {200: ok("public messages", obj({"public_messages": array(ref("PublicMessage"))},
                                              ("public_messages",)))}, scope="events:read",
            params=[query_param("state", {"type": "string", "enum": ["pending_approval", "approved", "rejected",
                                                                 "expired"]}),
                    query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500})], errors=(400,))},
        "/v1/public-messages/{id}/approve": {"post": op(
            "approvePublicMessage", "Approve; the approver must differ from the requester (403), then dispatch",
            {200: pm}, scope="public:approve", params=[pm_id], errors=(404, 409, 422))},
        "/v1/public-messages/{id}/reject": {"post": op(
            "rejectPublicMessage", "Reject with a reason", {200: pm}, scope="public:approve", params=[pm_id],
            body=json_body("PublicMessageDecision"),
            errors=(*BODY_ERRORS, 404, 409))},
        "/v1/public-messages/{id}": {"get": op(
            "getPublicMessage", "State, requester, approver, deliveries", {200: pm}, scope="events:read",
            params=[pm_id], errors=(404,))},
    }


def _acks() -> dict[str, Any]:
    page = ok("a page saying what happened", string(), "text/html")
    return {
        "/v1/deliveries/{id}/ack": {"post": op(
            "ackDelivery", "A unit confirms receipt (签收)", {200: ok("acknowledged", ref("AckResult"))},
            scope="acks:write", params=[path_param("id", "delivery id")], body=json_body("AckRequest", required=False),
            errors=(*BODY_ERRORS, 404))},
        "/a/{token}": {
            "get": op("ackLink", "The notice behind an SMS's signed link, with a 签收 button; never acknowledges "
                       "(link scanners and previews fetch it)", {200: page, 404: page},
                       params=[path_param("token", "signed link token")]),
            "post": op("ackLinkSign", "The page's 签收 button: acknowledges for the unit, once",
                        {200: page, 404: page, 409: page}, params=[path_param("token", "signed link token")])},
        "/l/{token}": {"get": op(
            "liveList", "Signed link to the live list of an event's unconfirmed units (sent to the HQ office)",
            {200: page, 404: page}, params=[path_param("token", "signed link token")])},
    }


def _ops() -> dict[str, Any]:
    record = obj({"seq": INT, "at": TIME, "principal": string(), "action": string(), "subject": string(),
                   "detail": {}, "prev_hash": string(), "hash": string()}, ("seq", "at", "principal", "action", "hash"))
    page = obj({"records": array(record), "next_after": nullable(INT)}, ("records", "next_after"))
    params = [query_param("after", {"type": "integer", "minimum": 0}),
              query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000})]
    return {
        "/v1/audit": {"get": op("getAudit", "Append-only, hash-chained audit trail, oldest first",
                                 {200: ok("records", page)}, scope="admin", errors=(400,), params=params)},
        "/openapi.json": {"get": op("openapi", "This document", {200: ok("OpenAPI 3.1", {"type": "object"})})},
        "/metrics": {"get": op("metrics", "Prometheus exposition", {200: ok("metrics", string(), "text/plain")})},
        "/healthz": {"get": op("healthz", "Liveness", {200: ok("alive", obj({"status": {"const": "ok"}},
                                                                                  ("status",)))})},
        "/readyz": {"get": op("readyz", "Readiness: store reachable, roster loaded", {
            200: ok("ready", ref("Readiness")), 503: ok("not ready", ref("Readiness"))})},
    }


def _console() -> dict[str, Any]:
    """The web console's page and the endpoints only it uses (beyond design.md's table)."""
    asset_types = ("text/html", "text/javascript", "text/css", "image/svg+xml")
    me = obj({"principal": string(), "scopes": array(string()), "can": {
        "type": "object", "additionalProperties": {"type": "boolean"}}}, ("principal", "scopes", "can"))
    preview = obj({"sms": {"type": "object"}, "voice": {"type": "object"}, "units": INT, "acks_required": INT,
                    "deliveries": INT, "by_channel": {"type": "object"}, "warnings": array(string()),
                    "problem": {"type": "object"}, "signoff": obj({"required": {"type": "boolean"},
                                                                    "signers": array(string())}),
                    "messages": array(obj({"unit_id": string(), "unit_name": string(), "channel": string(),
                                             "text": string(), "segments": nullable(INT)},
                                            ("unit_id", "unit_name", "channel", "text", "segments")),
                                       description="exactly what each planned delivery will carry")},
                   ("sms", "voice", "units", "deliveries", "messages"))
    return {
        "/": {"get": op("console", "The web console (the token is entered in the page)",
                         {200: ok("the console", string(), "text/html")}, errors=(404,))},
        "/static/{name}": {"get": op("consoleAsset", "The console's scripts, styles and images",
                                      {200: ok("the asset", string(), *asset_types)},
                                      params=[path_param("name", "asset file name")], errors=(404,))},
        "/v1/me": {"get": op("me", "Who the token belongs to and what it may do", {200: ok("the principal", me)},
                              security=BEARER, errors=(401,))},
        "/v1/stream": {"get": op(
            "stream", "Server-sent events for the console's live board (`?token=` accepted: EventSource "
            "cannot set headers)", {200: ok("an endless event stream", string(), "text/event-stream")},
            scope="events:read", errors=(400, 404), params=[query_param("event", string(maxLength=128)),
                                                            query_param("token", string())])},
        "/v1/preview": {"post": op(
            "preview", "What an event would send, without storing anything", {200: ok("the preview", preview)},
            scope="events:write", body=json_body("Event", example=_EVENT_EXAMPLE), errors=BODY_ERRORS)},
    }


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once; it describes the contract, not the config)."""
    schemas = component_schemas() | report_schemas()
    return {
        "openapi": "3.1.0",
        "info": {"title": "Zezhou emergency notification gateway", "version": "1",
                 "description": "HTTP API v1 (design.md section 5). Errors are always "
                                "`{\"error\": {\"code\", \"message\", \"field\"?}}`."},
        "paths": {**_events(), **_public(), **_acks(), **_ops(), **_console(), **provider_paths(),
                  **report_paths(), **signoff_paths()},
        "components": {
            "schemas": schemas,
            "responses": {f"E{code}": {"description": text, "content": content(ref("Error"))}
                          for code, text in ERRORS.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "API token with scopes"},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "for Alertmanager's basic_auth: the password is an API token"},
                "twilioSignature": {"type": "apiKey", "in": "header", "name": "X-Twilio-Signature"},
            },
        },
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(document(), ensure_ascii=False), content_type="application/json")
