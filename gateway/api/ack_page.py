"""The page behind an SMS's ack link: `GET /a/{token}` shows the notice and a 签收 button, and only
its `POST` acknowledges.

Carriers' SMS security scanners and phones' link previews fetch links by themselves; if a GET
acknowledged, a unit could show as 已签收 without any person having read the message. So GET and
HEAD only show: the full notice (headline, body, measures, validity, issuer, 文号), this unit's
duties and its action at this level. Expired, used and forged links get a page saying so.
"""

from __future__ import annotations

import html
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.acklinks import BadLink
from gateway.api.common import gw
from gateway.events import Event
from gateway.planner import chain_of, link_expiry
from gateway.wording import written

routes = web.RouteTableDef()
_EVENTS: OrderedDict[str, tuple[Event, dict[str, Any]]] = OrderedDict()  # event data never changes
_EVENTS_KEPT = 64
_STYLE = ("body{font-family:sans-serif;max-width:34em;margin:1.5em auto;padding:0 1em;line-height:1.6}"
          "h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.4em}.lead{font-weight:bold}"
          "button{font-size:1.2em;padding:.6em 2.4em;margin:1em 0}.muted{color:#555;font-size:.9em}")


def _page(title: str, body_html: str, status: int = 200) -> web.Response:
    doc = (f'<!doctype html><html lang="zh-CN"><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width,initial-scale=1">'
           f'<meta name="robots" content="noindex,nofollow"><title>{html.escape(title)}</title>'
           f"<style>{_STYLE}</style><body><h1>{html.escape(title)}</h1>{body_html}</body></html>")
    # never cached: the state (签收 or not) changes, and the page must not outlive the link in a cache
    return web.Response(text=doc, content_type="text/html", status=status,
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _p(text: str, cls: str = "") -> str:
    return f'<p{f" class={cls!r}" if cls else ""}>{html.escape(text)}</p>'


def _bad(text: str, status: int = 404) -> web.Response:
    return _page("链接无效", _p(f"{text}。请回复短信1或致电县指挥部办公室签收。"), status)


async def _event(request: web.Request, event_id: str) -> tuple[Event, dict[str, Any]]:
    """The event and its stored view, cached: a fan-out's units open their links within minutes."""
    hit = _EVENTS.get(event_id)
    if hit is None:
        view = await gw(request).store.get_event(event_id)
        hit = (Event.model_validate({**view["event"], "id": event_id}), view)
        _EVENTS[event_id] = hit
        while len(_EVENTS) > _EVENTS_KEPT:
            _EVENTS.popitem(last=False)
    return hit


async def _resolve(request: web.Request) -> dict[str, Any] | web.Response:
    """The delivery the link names, or the page to answer instead (forged, unknown, expired)."""
    g = gw(request)
    now = time.time()
    try:
        link = g.links.check(request.match_info["token"], now)
    except BadLink as exc:
        return _bad(str(exc))
    d = await g.store.delivery(delivery_id=link.delivery_id)
    if d is None:
        return _bad("找不到对应的通知")
    if link.expires_at is None and link_expiry(d["accepted_at"], None) < now:
        return _bad("this link has expired")
    return d


async def _notice(request: web.Request, d: dict[str, Any]) -> str:
    """The notice as HTML: the unit's whole message, the event's own fields, the unit's duties."""
    g = gw(request)
    event, view = await _event(request, d["event_id"])
    accepted = datetime.fromtimestamp(d["accepted_at"], UTC)
    ctx = g.renderer.context(event, d["event_id"], accepted, await chain_of(g.store, event))
    unit = g.runtime.roster.units.get(d["unit_id"])
    action = g.renderer.action(ctx, unit.actions) if unit is not None else ""
    roles = unit.roles if unit is not None else ()
    state = next((u for u in view["units"] if u["unit_id"] == d["unit_id"]), None)
    ack = timedelta(hours=1) if state and state.get("ack_required") else None
    if state and state.get("ack_deadline"):
        ack = datetime.fromisoformat(state["ack_deadline"].replace("Z", "+00:00")) - accepted
    parts = [_p(f"致：{d['unit_name']}", "muted"),
             _p(g.renderer.full_text(ctx, ack=ack, action=action, roles=roles), "lead")]
    if event.headline:
        parts.append(f"<h2>标题</h2>{_p(event.headline)}")
    if event.body:
        parts.append("<h2>正文</h2>" + "".join(_p(line) for line in event.body.splitlines() if line.strip()))
    if event.measures:
        items = "".join(f"<li>{html.escape(m.text)}</li>" for m in event.measures)
        parts.append(f"<h2>措施</h2><ul>{items}</ul>")
    start = written(event.valid_from or accepted)
    until = written(event.valid_until) if event.valid_until else "另行通知"
    issuer = event.issued_by.org if event.issued_by and event.issued_by.org else "泽州县重污染天气应急指挥部"
    meta = [f"有效期：{start}起至{until}", f"发布单位：{issuer}"]
    if event.issued_by and event.issued_by.doc_no:
        meta.append(f"文号：{event.issued_by.doc_no}")
    parts.append("<h2>通知信息</h2>" + "".join(_p(m) for m in meta))
    if unit is not None and (action or unit.duties):
        mine = _p(f"本级措施：{action}") if action else ""
        parts.append(f"<h2>本单位职责</h2>{mine}{_p(unit.duties) if unit.duties else ''}")
    return "".join(parts)


@routes.get("/a/{token}")
async def show(request: web.Request) -> web.Response:
    """The notice and a 签收 button; a GET (or HEAD, or a scanner's prefetch) never acknowledges."""
    found = await _resolve(request)
    if isinstance(found, web.Response):
        return found
    d = found
    notice = await _notice(request, d)
    if await gw(request).store.link_used(d["id"]) or d.get("unit_acked_at") is not None:
        return _page("已签收", _p("本单位签收已记录，无需再次签收。") + notice)
    button = ('<form method="post"><button type="submit">签收</button></form>'
              + _p("点击“签收”即确认本单位已收到并将落实以下通知。", "muted"))
    return _page("重污染天气应急通知", button + notice)


@routes.post("/a/{token}")
async def sign(request: web.Request) -> web.Response:
    """The 签收 button: acknowledges for the unit, once."""
    found = await _resolve(request)
    if isinstance(found, web.Response):
        return found
    g = gw(request)
    if await g.store.link_used(found["id"]):
        return _page("已签收", _p("此链接已使用过，签收已记录。"), status=409)
    res = await g.acks.acknowledge(delivery_id=found["id"], by="ack-link", via="link")
    if res is None:
        return _bad("找不到对应的通知")
    return _page("签收成功", _p("已记录本单位签收，谢谢。请按通知落实应急响应措施。"))
