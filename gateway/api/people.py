"""The directory kept by the office (`PUT /v1/roster`, `GET /v1/roster/export`) and the live list of
unconfirmed units behind the HQ office's escalation SMS (`GET /l/{token}`)."""

from __future__ import annotations

import html
import json
import time

from aiohttp import web

from gateway.acklinks import BadLink
from gateway.api.common import gw, json_response, require
from gateway.api.errors import ApiError
from gateway.flows import directory
from gateway.store.base import UnknownEvent

routes = web.RouteTableDef()


def _page(title: str, items: list[str], note: str, status: int = 200) -> web.Response:
    rows = "".join(f"<li>{html.escape(i)}</li>" for i in items)
    body = (f'<!doctype html><html lang="zh-CN"><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)}</title>'
            f'<body style="font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em">'
            f"<h1>{html.escape(title)}</h1><p>{html.escape(note)}</p><ol>{rows}</ol></body></html>")
    return web.Response(text=body, content_type="text/html", status=status, headers={"Cache-Control": "no-store"})


@routes.get("/l/{token}")
async def live_list(request: web.Request) -> web.Response:
    """The event's units that still owe an ack, as of now (the link is signed and expires)."""
    g = gw(request)
    try:
        delivery_id = g.persons.lists.verify(request.match_info["token"], time.time())
    except BadLink as exc:
        return _page("链接无效", [], f"{exc}。", status=404)
    d = await g.store.delivery(delivery_id=delivery_id)
    if d is None:
        return _page("链接无效", [], "找不到对应的通知。", status=404)
    try:
        view = await g.store.get_event(d["event_id"])
    except UnknownEvent:
        return _page("链接无效", [], "找不到对应的通知。", status=404)
    owed = [u for u in view["units"] if u.get("ack_required")]
    missing = [u["unit_name"] for u in owed if not u.get("acked_at")]
    head = view["event"].get("headline") or d["event_id"]
    note = f"{head}：共{len(owed)}个单位需签收，{len(owed) - len(missing)}个已签收，以下{len(missing)}个尚未签收。"
    return _page("未签收单位（实时）", missing, note)


# ---- the directory kept by the office: PUT /v1/roster, GET /v1/roster/export

_BY_TYPE = {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx", "text/csv": "csv",
            "application/yaml": "yaml", "application/x-yaml": "yaml", "text/yaml": "yaml", "text/x-yaml": "yaml"}


def _format(request: web.Request, default: str | None) -> str:
    fmt = request.query.get("format") or _BY_TYPE.get(request.content_type) or default
    if fmt not in directory.FORMATS:
        raise ApiError(415 if default is None and "format" not in request.query else 400, "unsupported_format",
                       f"say the format with ?format= ({', '.join(directory.FORMATS)}) or the Content-Type "
                       f"({', '.join(sorted(_BY_TYPE))})", field="format")
    return fmt


@routes.put("/v1/roster")
async def put_roster(request: web.Request) -> web.Response:
    """Replace the directory with an upload (XLSX / CSV: persons and schedules; YAML: all), checked
    whole: 422 with every problem, or the new revision."""
    principal = require(request, "roster:write")
    fmt = _format(request, None)
    data = await request.read()
    try:
        answer = await gw(request).directory_desk.replace(data, fmt, principal=principal.name)
    except directory.InvalidRoster as exc:
        return web.json_response(
            {"error": {"code": exc.code, "message": exc.message, "problems": [p.to_json() for p in exc.problems]}},
            status=422, dumps=lambda o: json.dumps(o, ensure_ascii=False))
    return json_response(answer)


@routes.get("/v1/roster/export")
async def export_roster(request: web.Request) -> web.Response:
    """The directory in the office's shapes, with the numbers in full (scope roster:write)."""
    require(request, "roster:write")
    fmt = _format(request, "xlsx")
    body, content_type = await gw(request).directory_desk.export(fmt)
    name = f"zezhou-directory.{fmt}"
    return web.Response(body=body, headers={"Content-Type": content_type,
                                            "Content-Disposition": f'attachment; filename="{name}"'})
