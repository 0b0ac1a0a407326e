"""The report routes in `/openapi.json` (gateway/api/openapi.py adds these paths)."""

from __future__ import annotations

from typing import Any

from gateway.api import openapi_parts as oa

_FORM = "application/x-www-form-urlencoded"


def _schemas() -> dict[str, Any]:
    action = oa.obj({"done": {"type": "boolean"}, "note": oa.string(maxLength=200)}, ("done",), closed=True)
    report = oa.obj({
        "request_id": oa.string(), "unit_id": oa.string(), "unit_name": oa.string(), "version": {"type": "integer",
                                                                                           "minimum": 1},
        "submitted_at": oa.TIME, "late": {"type": "boolean"}, "entered_by": oa.string(),
        "via": {"enum": ["link", "phone", "api"]},
        "actions": {"type": "object", "additionalProperties": action},
        "figures": {"type": "object", "additionalProperties": {"type": ["integer", "null"]}}, "text": oa.string()},
        ("request_id", "unit_id", "version", "submitted_at", "late", "entered_by", "via"))
    entry = oa.obj({
        "chain_id": oa.string(minLength=1, maxLength=128, description="any event id of the warning chain"),
        "kind": {"enum": ["daily", "summary"], "default": "daily"},
        "date": oa.string(pattern=r"^\d{4}-\d{2}-\d{2}$", description="the day reported on (daily reports)"),
        "unit_id": oa.string(minLength=1, maxLength=128),
        "actions": {"type": "object", "additionalProperties": action,
                    "description": "every action of the unit's form at the chain's level, by id"},
        "figures": {"type": "object", "additionalProperties": {"type": ["integer", "null"], "minimum": 0}},
        "text": oa.string(maxLength=1000), "via": {"enum": ["phone", "api"], "default": "phone"}},
        ("chain_id", "unit_id"), closed=True)
    unit = oa.obj({"unit_id": oa.string(), "unit_name": oa.string(), "reported": {"type": "boolean"},
                    "versions": oa.INT, "report": {"oneOf": [oa.ref("UnitReport"), {"type": "null"}]}},
                   ("unit_id", "reported"))
    request = oa.obj({
        "id": oa.string(), "kind": {"enum": ["daily", "summary"]}, "period": oa.string(), "level": oa.NSTR,
        "status": oa.string(), "due_at": oa.TIME, "reported": oa.INT, "expected": oa.INT,
        "missing": oa.array(oa.obj({"unit_id": oa.string(), "unit_name": oa.string()})), "units": oa.array(unit)},
        ("id", "kind", "period", "due_at", "missing", "units"))
    return {"UnitReport": report, "ReportEntry": entry, "ReportRequestStatus": request}


def paths() -> dict[str, Any]:
    page = oa.ok("the form, or a page saying what is wrong", oa.string(), "text/html")
    token = oa.path_param("token", "signed report link token")
    form = {"required": True, "content": oa.content(oa.obj({"text": oa.string(maxLength=1000)}), _FORM)}
    event_id = oa.path_param("id", "any event id of the warning chain")
    return {
        "/r/{token}": {
            "get": oa.op("reportForm", "A unit's report form (phone-width HTML; never files anything)",
                          {200: page, 404: page}, params=[token]),
            "post": oa.op("reportSubmit", "File or correct the unit's report (`a.<action>` done|not_done, "
                           "`n.<action>`, `f.<figure>`, `text`); until the deadline every correction is a new "
                           "version", {200: page, 400: page, 404: page, 409: page, 415: page, 422: page},
                           params=[token], body=form)},
        "/v1/reports": {"post": oa.op(
            "enterReport", "The office enters a unit's report that was phoned in (recorded with who entered it)",
            {201: oa.ok("filed", oa.ref("UnitReport"))}, scope="reports:write",
            body=oa.json_body("ReportEntry"), errors=(*oa.BODY_ERRORS, 404, 409))},
        "/v1/events/{id}/daily-report": {"get": oa.op(
            "dailyReport", "The day's roll-up (日报) of the event's chain, to forward as it is: title, period, "
            "level, each unit's report, the figures summed, the missing units (without `date`: the latest day)",
            {200: {"description": "the document", "content": {
                "application/pdf": {"schema": oa.string(format="binary")},
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document": {
                    "schema": oa.string(format="binary")},
                "text/csv": {"schema": oa.string()}}}}, scope="events:read",
            params=[event_id, oa.query_param("date", oa.string(format="date")),
                    oa.query_param("format", {"enum": ["pdf", "docx", "csv"], "default": "pdf"})], errors=(400, 404))},
        "/v1/events/{id}/after-action": {"get": oa.op(
            "afterAction", "The chain's after-action report (总结评估): timeline, reach and confirmation per unit, "
            "a chart of units confirmed over time, delivery failures, public messages, the daily reports",
            {200: {"description": "the document", "content": {
                "application/pdf": {"schema": oa.string(format="binary")},
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document": {
                    "schema": oa.string(format="binary")},
                "text/html": {"schema": oa.string()}}}}, scope="events:read",
            params=[event_id, oa.query_param("format", {"enum": ["pdf", "docx", "html"], "default": "pdf"})],
            errors=(400, 404))},
        "/v1/events/{id}/reports": {"get": oa.op(
            "chainReports", "Report requests of the event's chain: who has reported and who has not",
            {200: oa.ok("requests", oa.obj({"chain_id": oa.string(), "requests": oa.array(
                oa.ref("ReportRequestStatus"))}, ("chain_id", "requests")))}, scope="events:read",
            params=[event_id, oa.query_param("date", oa.string(format="date"))], errors=(400, 404))},
    }
