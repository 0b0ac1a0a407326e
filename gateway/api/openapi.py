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

from gateway.api.schemas import EVENT_STATES, component_schemas
from gateway.providers.callbacks import openapi_paths as provider_paths

routes = web.RouteTableDef()

Schema = dict[str, Any]
_REF = "#/components/schemas/"
_JSON = "application/json"
_CAP_TYPES = ("application/cap+xml", "application/xml", "text/xml")
_ERRORS = {400: "malformed request or parameter", 401: "no or bad token", 403: "missing scope or two-person rule",
           404: "no such resource", 409: "idempotency or state conflict", 413: "body over the configured limit",
           415: "unsupported content type", 422: "valid syntax, invalid content"}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _ref(name: str) -> Schema:
    return {"$ref": _REF + name}


def _str(**kw: Any) -> Schema:
    return {"type": "string", **kw}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), *, closed: bool = False) -> Schema:
    out: Schema = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


def _array(items: Schema, **kw: Any) -> Schema:
    return {"type": "array", "items": items, **kw}


_TIME = _str(format="date-time")
_NTIME = _nullable(_TIME)
_NSTR = _nullable(_str())
_INT = {"type": "integer", "minimum": 0}


def _content(schema: Schema, *types: str, example: Any = None) -> dict[str, Any]:
    extra = {} if example is None else {"example": example}
    return {t: {"schema": schema, **extra} for t in (types or (_JSON,))}


def _ok(description: str, schema: Schema, *types: str) -> dict[str, Any]:
    return {"description": description, "content": _content(schema, *types)}


def _op(op_id: str, summary: str, responses: dict[int, Any], *, errors: tuple[int, ...] = (),
        security: list[dict[str, list[str]]] | None = None, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, scope: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary + (f" (scope `{scope}`)" if scope else "")}
    if params:
        out["parameters"] = params
    if body:
        out["requestBody"] = body
    out["security"] = security if security is not None else (BEARER if scope else [])
    all_errors = ((401, 403) if scope else ()) + errors
    out["responses"] = {str(k): v for k, v in responses.items()} | {
        str(code): {"$ref": f"#/components/responses/E{code}"} for code in sorted(set(all_errors))}
    return out


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": _str()}


def _query(name: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _json_body(name: str, *, required: bool = True, example: Any = None) -> dict[str, Any]:
    return {"required": required, "content": _content(_ref(name), example=example)}


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


_BODY_ERRORS = (400, 413, 415, 422)
_EVENT_ID = _path("id", "event id")


def _events() -> dict[str, Any]:
    accepted = _ok("accepted: the event and all its deliveries are durable", _ref("EventAccepted"))
    replay = _ok("identical replay of an earlier submission: the first answer, nothing re-sent",
                 _ref("EventAccepted"))
    return {
        "/v1/events": {
            "post": _op("submitEvent", "Submit an event", {202: accepted, 200: replay}, scope="events:write",
                        body=_json_body("Event", example=_EVENT_EXAMPLE), errors=(*_BODY_ERRORS, 409)),
            "get": _op("listEvents", "List events, newest first", {200: _ok("events", _obj(
                {"events": _array(_ref("EventSummary"))}, ("events",)))}, scope="events:read", errors=(400,),
                params=[_query("status", {"enum": list(EVENT_STATES)}),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50})]),
        },
        "/v1/events/{id}": {"get": _op("getEvent", "An event with delivery summary, units and deliveries",
                                       {200: _ok("the event", _ref("EventDetail"))}, scope="events:read",
                                       params=[_EVENT_ID], errors=(404,))},
        "/v1/events/{id}/cancel": {"post": _op(
            "cancelEvent", "Cancel what is still pending", {200: _ok("cancelled", _obj(
                {"event_id": _str(), "cancelled": _INT}, ("event_id", "cancelled")))},
            scope="events:write", params=[_EVENT_ID], errors=(404,))},
        "/v1/events/{id}/cap": {"get": _op(
            "getEventCap", "The event as CAP 1.2 XML (GB/T 35965.1 identifier)",
            {200: _ok("a CAP 1.2 alert", _str(), "application/cap+xml")}, scope="events:read",
            params=[_EVENT_ID], errors=(404,))},
        "/v1/intake/cap": {"post": _op(
            "intakeCap", "CAP 1.2, 1.1 or 1.0 XML, signed or not -> event; hostile XML 400 `hostile_xml`, "
            "schema-invalid 422 `invalid_cap`, 422 `bad_signature`, `signature_required`, `not_our_area`, "
            "`not_our_event`; 200 for a replay or a Cancel of a message never received (nothing sent)",
            {202: accepted, 200: replay}, scope="events:write", errors=(*_BODY_ERRORS, 409),
            body={"required": True, "content": _content(_str(), *_CAP_TYPES, example=_CAP_EXAMPLE)})},
        "/v1/intake/alertmanager": {"post": _op(
            "intakeAlertmanager", "Alertmanager webhook payload version 4 -> events (Bearer or Basic auth, "
            "the password being a token)", {202: _ok("at least one event created", _ref("AlertmanagerResult")),
                                             200: _ok("nothing new (replays, ignored)",
                                                      _ref("AlertmanagerResult"))},
            scope="events:write", security=[{"bearer": []}, {"basic": []}],
            body=_json_body("AlertmanagerPayload", example=_AM_EXAMPLE),
            errors=_BODY_ERRORS)},
        "/v1/roster": {"get": _op("getRoster", "Units with roles, groups, contacts, persons (numbers masked) and "
                                  "duty schedules", {200: _ok("the roster", _obj(
            {"version": _str(), "warnings": _array(_str()), "units": _array({"type": "object"})},
            ("version", "units")))}, scope="events:read"),
            "put": _op("putRoster", "Replace the directory: the office's sheet (XLSX or CSV: persons and duty "
                       "schedules) or roster YAML (everything), checked whole; 422 lists every problem with "
                       "its sheet, row and column, and nothing changes", {200: _ok("the revision in force", _obj(
                           {"revision": _INT, "version": _str(), "changed": {"type": "boolean"},
                            "changes": {"type": "object"}}, ("revision", "version", "changed"))),
                           422: _ok("refused, nothing changed: every problem listed", _ROSTER_PROBLEMS)},
                       scope="roster:write", params=[_ROSTER_FORMAT],
                       body={"required": True, "content": _content(_str(), *_ROSTER_TYPES)},
                       errors=(400, 409, 413, 415))},
        "/v1/roster/export": {"get": _op(
            "exportRoster", "The directory in the shape it is imported in, numbers in full (default xlsx)",
            {200: _ok("the file", {}, *_ROSTER_TYPES)}, scope="roster:write", params=[_ROSTER_FORMAT],
            errors=(400,))},
    }


_ROSTER_TYPES = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "text/csv",
                 "application/yaml")
_ROSTER_FORMAT = _query("format", {"type": "string", "enum": ["xlsx", "csv", "yaml"]})
# the contract's error shape, with the import's problems beside code and message
_ROSTER_PROBLEMS = _obj({"error": _obj({
    "code": _str(pattern="^[a-z0-9_]+$"), "message": _str(), "field": _str(),
    "problems": _array(_obj({"sheet": _str(), "row": {"type": ["integer", "null"]},
                             "column": {"type": ["string", "null"]}, "message": _str()},
                            ("sheet", "message")))}, ("code", "message"), closed=True)}, ("error",), closed=True)


def _public() -> dict[str, Any]:
    pm = _ok("the public message", _ref("PublicMessage"))
    pm_id = _path("id", "public message id")
    return {
        "/v1/public-messages": {"post": _op(
            "requestPublicMessage", "Media centre drafts a public message for an event",
            {201: _ok("pending_approval", _ref("PublicMessage"))}, scope="public:request",
            body=_json_body("PublicMessageRequest"), errors=(*_BODY_ERRORS, 409)), "get": _op(
            "listPublicMessages", "Public messages, newest first (e.g. the drafts awaiting approval)",
            {200: _ok("public messages", _obj({"public_messages": _array(_ref("PublicMessage"))},
                                              ("public_messages",)))}, scope="events:read",
            params=[_query("state", {"type": "string", "enum": ["pending_approval", "approved", "rejected",
                                                                 "expired"]}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500})], errors=(400,))},
        "/v1/public-messages/{id}/approve": {"post": _op(
            "approvePublicMessage", "Approve; the approver must differ from the requester (403), then dispatch",
            {200: pm}, scope="public:approve", params=[pm_id], errors=(404, 409, 422))},
        "/v1/public-messages/{id}/reject": {"post": _op(
            "rejectPublicMessage", "Reject with a reason", {200: pm}, scope="public:approve", params=[pm_id],
            body=_json_body("PublicMessageDecision"),
            errors=(*_BODY_ERRORS, 404, 409))},
        "/v1/public-messages/{id}": {"get": _op(
            "getPublicMessage", "State, requester, approver, deliveries", {200: pm}, scope="events:read",
            params=[pm_id], errors=(404,))},
    }


def _acks() -> dict[str, Any]:
    page = _ok("a page saying what happened", _str(), "text/html")
    return {
        "/v1/deliveries/{id}/ack": {"post": _op(
            "ackDelivery", "A unit confirms receipt (签收)", {200: _ok("acknowledged", _ref("AckResult"))},
            scope="acks:write", params=[_path("id", "delivery id")], body=_json_body("AckRequest", required=False),
            errors=(*_BODY_ERRORS, 404))},
        "/a/{token}": {
            "get": _op("ackLink", "The notice behind an SMS's signed link, with a 签收 button; never acknowledges "
                       "(link scanners and previews fetch it)", {200: page, 404: page},
                       params=[_path("token", "signed link token")]),
            "post": _op("ackLinkSign", "The page's 签收 button: acknowledges for the unit, once",
                        {200: page, 404: page, 409: page}, params=[_path("token", "signed link token")])},
        "/l/{token}": {"get": _op(
            "liveList", "Signed link to the live list of an event's unconfirmed units (sent to the HQ office)",
            {200: page, 404: page}, params=[_path("token", "signed link token")])},
    }


def _ops() -> dict[str, Any]:
    record = _obj({"seq": _INT, "at": _TIME, "principal": _str(), "action": _str(), "subject": _str(),
                   "detail": {}, "prev_hash": _str(), "hash": _str()}, ("seq", "at", "principal", "action", "hash"))
    page = _obj({"records": _array(record), "next_after": _nullable(_INT)}, ("records", "next_after"))
    params = [_query("after", {"type": "integer", "minimum": 0}),
              _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})]
    return {
        "/v1/audit": {"get": _op("getAudit", "Append-only, hash-chained audit trail, oldest first",
                                 {200: _ok("records", page)}, scope="admin", errors=(400,), params=params)},
        "/openapi.json": {"get": _op("openapi", "This document", {200: _ok("OpenAPI 3.1", {"type": "object"})})},
        "/metrics": {"get": _op("metrics", "Prometheus exposition", {200: _ok("metrics", _str(), "text/plain")})},
        "/healthz": {"get": _op("healthz", "Liveness", {200: _ok("alive", _obj({"status": {"const": "ok"}},
                                                                                  ("status",)))})},
        "/readyz": {"get": _op("readyz", "Readiness: store reachable, roster loaded", {
            200: _ok("ready", _ref("Readiness")), 503: _ok("not ready", _ref("Readiness"))})},
    }


def _reports() -> dict[str, Any]:
    from gateway.api.reports_openapi import paths  # issue 17: daily reports, roll-up, after-action

    return paths()


def _signoff() -> dict[str, Any]:
    from gateway.api.signoff import openapi_paths  # issue 16: sign-off of warnings

    return openapi_paths()


def _console() -> dict[str, Any]:
    """The web console's page and the endpoints only it uses (beyond design.md's table)."""
    asset_types = ("text/html", "text/javascript", "text/css", "image/svg+xml")
    me = _obj({"principal": _str(), "scopes": _array(_str()), "can": {
        "type": "object", "additionalProperties": {"type": "boolean"}}}, ("principal", "scopes", "can"))
    preview = _obj({"sms": {"type": "object"}, "voice": {"type": "object"}, "units": _INT, "acks_required": _INT,
                    "deliveries": _INT, "by_channel": {"type": "object"}, "warnings": _array(_str()),
                    "problem": {"type": "object"}, "signoff": _obj({"required": {"type": "boolean"},
                                                                    "signers": _array(_str())}),
                    "messages": _array(_obj({"unit_id": _str(), "unit_name": _str(), "channel": _str(),
                                             "text": _str(), "segments": _nullable(_INT)},
                                            ("unit_id", "unit_name", "channel", "text", "segments")),
                                       description="exactly what each planned delivery will carry")},
                   ("sms", "voice", "units", "deliveries", "messages"))
    return {
        "/": {"get": _op("console", "The web console (the token is entered in the page)",
                         {200: _ok("the console", _str(), "text/html")}, errors=(404,))},
        "/static/{name}": {"get": _op("consoleAsset", "The console's scripts, styles and images",
                                      {200: _ok("the asset", _str(), *asset_types)},
                                      params=[_path("name", "asset file name")], errors=(404,))},
        "/v1/me": {"get": _op("me", "Who the token belongs to and what it may do", {200: _ok("the principal", me)},
                              security=BEARER, errors=(401,))},
        "/v1/stream": {"get": _op(
            "stream", "Server-sent events for the console's live board (`?token=` accepted: EventSource "
            "cannot set headers)", {200: _ok("an endless event stream", _str(), "text/event-stream")},
            scope="events:read", errors=(400, 404), params=[_query("event", _str(maxLength=128)),
                                                            _query("token", _str())])},
        "/v1/preview": {"post": _op(
            "preview", "What an event would send, without storing anything", {200: _ok("the preview", preview)},
            scope="events:write", body=_json_body("Event", example=_EVENT_EXAMPLE), errors=_BODY_ERRORS)},
    }


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once; it describes the contract, not the config)."""
    schemas = component_schemas()
    from gateway.api.reports_openapi import _schemas as report_schemas

    schemas |= report_schemas()
    return {
        "openapi": "3.1.0",
        "info": {"title": "Zezhou emergency notification gateway", "version": "1",
                 "description": "HTTP API v1 (design.md section 5). Errors are always "
                                "`{\"error\": {\"code\", \"message\", \"field\"?}}`."},
        "paths": {**_events(), **_public(), **_acks(), **_ops(), **_console(), **provider_paths(),
                  **_reports(), **_signoff()},
        "components": {
            "schemas": schemas,
            "responses": {f"E{code}": {"description": text, "content": _content(_ref("Error"))}
                          for code, text in _ERRORS.items()},
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
