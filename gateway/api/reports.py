"""Report routes: the units' signed form links (`/r/{token}`: GET shows, POST files), the
office's entry of a report phoned in, and who has reported per chain and day."""

from __future__ import annotations

import functools
from datetime import date, datetime
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, Template

from gateway.api.common import gw, json_response, read_json, require
from gateway.api.errors import ApiError, domain_status
from gateway.flows import reports
from gateway.flows.errors import DomainError
from gateway.render import BEIJING, LEVELS

routes = web.RouteTableDef()
_FORM = "application/x-www-form-urlencoded"
_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                 "X-Content-Type-Options": "nosniff"}


@functools.cache
def _template() -> Template:
    env = Environment(loader=PackageLoader("gateway", "templates"), autoescape=True)
    return env.get_template("report_form.html.j2")


def _when(at: float) -> str:
    t = datetime.fromtimestamp(at, BEIJING)
    return f"{t.month}月{t.day}日{t.hour}时{t.minute:02d}分"


def _page(view: reports.FormView | None, *, title: str, message: str = "", ok: bool = False, status: int = 200,
          values: dict[str, str] | None = None) -> web.Response:
    ctx: dict[str, Any] = {"view": view, "title": title, "message": message, "ok": ok, "values": values or {},
                           "drill": bool(view and view.drill), "note_max": reports.NOTE_MAX}
    if view is not None:
        req = view.request
        day = date.fromisoformat(req.period)
        what = "信息报送" if req.kind == "daily" else "（解除）总结评估"
        ctx |= {"period_text": f"{day.month}月{day.day}日{what}",
                "due_text": _when(req.due_at), "text_max": view.text_max,
                "level_text": LEVELS[req.level][0] + "预警" if req.level in LEVELS else "",
                "filed_text": _when(view.latest.submitted_at) if view.latest else ""}
    return web.Response(text=_template().render(ctx), content_type="text/html", status=status,
                        headers=_PAGE_HEADERS)


def _values(view: reports.FormView) -> dict[str, str]:
    """The latest report as form values, so a correction starts from it."""
    if view.latest is None:
        return {}
    data = view.latest.data
    out = {"text": str(data.get("text", ""))}
    for aid, a in dict(data.get("actions", {})).items():
        out[f"a.{aid}"] = "done" if a.get("done") else "not_done"
        out[f"n.{aid}"] = str(a.get("note", ""))
    for key, v in dict(data.get("figures", {})).items():
        out[f"f.{key}"] = "" if v is None else str(v)
    return out


def _title(view: reports.FormView | None) -> str:
    if view is None:
        return "报送链接"
    return "重污染天气应急措施落实情况报送" if view.request.kind == "daily" else "重污染天气应急响应总结评估"


@routes.get("/r/{token}")
async def report_form(request: web.Request) -> web.Response:
    try:
        view = await gw(request).reports.open_link(request.match_info["token"])
    except DomainError as exc:
        return _page(None, title="链接无效", message=f"{exc.message}。请致电县指挥部办公室报送。",
                     status=domain_status(exc))
    note = ("报送截止时间已过，不能再更正。" if view.closed
            else "已过截止时间，现在报送将记为逾期。" if view.late else "")
    return _page(view, title=_title(view), message=note, values=_values(view))


@routes.post("/r/{token}")
async def report_submit(request: web.Request) -> web.Response:
    g = gw(request)
    token = request.match_info["token"]
    try:
        view = await g.reports.open_link(token)
    except DomainError as exc:
        return _page(None, title="链接无效", message=f"{exc.message}。请致电县指挥部办公室报送。",
                     status=domain_status(exc))
    if request.content_type != _FORM:
        return _page(view, title=_title(view), message="请通过本页表单提交。", status=415, values=_values(view))
    try:
        form = await request.post()
    except ValueError:
        return _page(view, title=_title(view), message="表单内容无法读取，请重新提交。", status=400,
                     values=_values(view))
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        filed = await g.reports.submit_link(token, fields)
    except DomainError as exc:
        return _page(view, title=_title(view), message=exc.message, status=domain_status(exc), values=fields)
    view = await g.reports.open_link(token)
    return _page(view, title=_title(view), ok=True, values=_values(view),
                 message=f"报送成功（第{filed.version}版）{'，已记为逾期' if filed.late else ''}。谢谢！")


@routes.post("/v1/reports")
async def post_report(request: web.Request) -> web.Response:
    principal = require(request, "reports:write")
    body = await read_json(request)
    filed = await gw(request).reports.enter(body, principal=principal.name)
    return json_response(reports.report_json(filed), status=201)


def date_param(request: web.Request, name: str = "date", *, required: bool = False) -> str | None:
    """Raises ApiError 400 for a value that is not a YYYY-MM-DD date (or a missing required one)."""
    raw = request.query.get(name)
    if raw is None:
        if required:
            raise ApiError(400, "bad_parameter", f"{name} (YYYY-MM-DD) is required", field=name)
        return None
    try:
        return date.fromisoformat(raw).isoformat() if len(raw) == 10 else _bad_date(name)
    except ValueError as exc:
        raise ApiError(400, "bad_parameter", f"{name} must be a date YYYY-MM-DD", field=name) from exc


def _bad_date(name: str) -> str:
    raise ApiError(400, "bad_parameter", f"{name} must be a date YYYY-MM-DD", field=name)


@routes.get("/v1/events/{id}/reports")
async def chain_reports(request: web.Request) -> web.Response:
    require(request, "events:read")
    day = date_param(request)
    return json_response(await gw(request).reports.chain_reports(request.match_info["id"], day))
