"""The report routes in `/openapi.json` (gateway/api/openapi.py adds these paths)."""

from __future__ import annotations

from typing import Any

from gateway.api import openapi as oa

_FORM = "application/x-www-form-urlencoded"


def _schemas() -> dict[str, Any]:
    action = oa._obj({"done": {"type": "boolean"}, "note": oa._str(maxLength=200)}, ("done",), closed=True)
    report = oa._obj({
        "request_id": oa._str(), "unit_id": oa._str(), "unit_name": oa._str(), "version": {"type": "integer",
                                                                                           "minimum": 1},
        "submitted_at": oa._TIME, "late": {"type": "boolean"}, "entered_by": oa._str(),
        "via": {"enum": ["link", "phone", "api"]},
        "actions": {"type": "object", "additionalProperties": action},
        "figures": {"type": "object", "additionalProperties": {"type": ["integer", "null"]}}, "text": oa._str()},
        ("request_id", "unit_id", "version", "submitted_at", "late", "entered_by", "via"))
    entry = oa._obj({
        "chain_id": oa._str(minLength=1, maxLength=128, description="any event id of the warning chain"),
        "kind": {"enum": ["daily", "summary"], "default": "daily"},
        "date": oa._str(pattern=r"^\d{4}-\d{2}-\d{2}$", description="the day reported on (daily reports)"),
        "unit_id": oa._str(minLength=1, maxLength=128),
        "actions": {"type": "object", "additionalProperties": action,
                    "description": "every action of the unit's form at the chain's level, by id"},
        "figures": {"type": "object", "additionalProperties": {"type": ["integer", "null"], "minimum": 0}},
        "text": oa._str(maxLength=1000), "via": {"enum": ["phone", "api"], "default": "phone"}},
        ("chain_id", "unit_id"), closed=True)
    unit = oa._obj({"unit_id": oa._str(), "unit_name": oa._str(), "reported": {"type": "boolean"},
                    "versions": oa._INT, "report": {"oneOf": [oa._ref("UnitReport"), {"type": "null"}]}},
                   ("unit_id", "reported"))
    request = oa._obj({
        "id": oa._str(), "kind": {"enum": ["daily", "summary"]}, "period": oa._str(), "level": oa._NSTR,
        "status": oa._str(), "due_at": oa._TIME, "reported": oa._INT, "expected": oa._INT,
        "missing": oa._array(oa._obj({"unit_id": oa._str(), "unit_name": oa._str()})), "units": oa._array(unit)},
        ("id", "kind", "period", "due_at", "missing", "units"))
    return {"UnitReport": report, "ReportEntry": entry, "ReportRequestStatus": request}


def paths() -> dict[str, Any]:
    page = oa._ok("the form, or a page saying what is wrong", oa._str(), "text/html")
    token = oa._path("token", "signed report link token")
    form = {"required": True, "content": oa._content(oa._obj({"text": oa._str(maxLength=1000)}), _FORM)}
    event_id = oa._path("id", "any event id of the warning chain")
    return {
        "/r/{token}": {
            "get": oa._op("reportForm", "A unit's report form (phone-width HTML; never files anything)",
                          {200: page, 404: page}, params=[token]),
            "post": oa._op("reportSubmit", "File or correct the unit's report (`a.<action>` done|not_done, "
                           "`n.<action>`, `f.<figure>`, `text`); until the deadline every correction is a new "
                           "version", {200: page, 400: page, 404: page, 409: page, 415: page, 422: page},
                           params=[token], body=form)},
        "/v1/reports": {"post": oa._op(
            "enterReport", "The office enters a unit's report that was phoned in (recorded with who entered it)",
            {201: oa._ok("filed", oa._ref("UnitReport"))}, scope="reports:write",
            body=oa._json_body("ReportEntry"), errors=(*oa._BODY_ERRORS, 404, 409))},
        "/v1/events/{id}/daily-report": {"get": oa._op(
            "dailyReport", "The day's roll-up (日报) of the event's chain, to forward as it is: title, period, "
            "level, each unit's report, the figures summed, the missing units (without `date`: the latest day)",
            {200: {"description": "the document", "content": {
                "application/pdf": {"schema": oa._str(format="binary")},
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document": {
                    "schema": oa._str(format="binary")},
                "text/csv": {"schema": oa._str()}}}}, scope="events:read",
            params=[event_id, oa._query("date", oa._str(format="date")),
                    oa._query("format", {"enum": ["pdf", "docx", "csv"], "default": "pdf"})], errors=(400, 404))},
        "/v1/events/{id}/after-action": {"get": oa._op(
            "afterAction", "The chain's after-action report (总结评估): timeline, reach and confirmation per unit, "
            "a chart of units confirmed over time, delivery failures, public messages, the daily reports",
            {200: {"description": "the document", "content": {
                "application/pdf": {"schema": oa._str(format="binary")},
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document": {
                    "schema": oa._str(format="binary")},
                "text/html": {"schema": oa._str()}}}}, scope="events:read",
            params=[event_id, oa._query("format", {"enum": ["pdf", "docx", "html"], "default": "pdf"})],
            errors=(400, 404))},
        "/v1/events/{id}/reports": {"get": oa._op(
            "chainReports", "Report requests of the event's chain: who has reported and who has not",
            {200: oa._ok("requests", oa._obj({"chain_id": oa._str(), "requests": oa._array(
                oa._ref("ReportRequestStatus"))}, ("chain_id", "requests")))}, scope="events:read",
            params=[event_id, oa._query("date", oa._str(format="date"))], errors=(400, 404))},
    }
