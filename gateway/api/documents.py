"""The office's documents: the day's roll-up (日报) and the chain's after-action report (总结评估),
each in the formats the office forwards as they are. Rendering is blocking work (reportlab,
python-docx, matplotlib): it runs in a worker thread of its own, never on the event loop."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

from gateway.api.common import gw, require
from gateway.api.errors import ApiError
from gateway.api.reports import date_param
from gateway.documents import pdf, text, word

routes = web.RouteTableDef()
T = TypeVar("T")
# one thread: matplotlib and reportlab keep module state; documents queue instead of racing
_RENDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="documents")
TYPES = {"pdf": "application/pdf", "csv": "text/csv",
         "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "html": "text/html"}


async def render(fn: Callable[[T], bytes], doc: T) -> bytes:
    return await asyncio.get_running_loop().run_in_executor(_RENDER, fn, doc)


def _format(request: web.Request, allowed: tuple[str, ...]) -> str:
    """Raises ApiError 400 for a format not in `allowed`."""
    fmt = request.query.get("format", allowed[0])
    if fmt not in allowed:
        raise ApiError(400, "bad_parameter", f"format must be one of {', '.join(allowed)}", field="format")
    return fmt


def _file(body: bytes, fmt: str, name: str) -> web.Response:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120]
    disposition = "inline" if fmt == "html" else "attachment"
    headers = {"Content-Disposition": f'{disposition}; filename="{safe}.{fmt}"', "Cache-Control": "no-store"}
    ctype = TYPES[fmt] + ("; charset=utf-8" if fmt in ("csv", "html") else "")
    return web.Response(body=body, headers={**headers, "Content-Type": ctype})


@routes.get("/v1/events/{id}/daily-report")
async def daily_report(request: web.Request) -> web.Response:
    require(request, "events:read")
    fmt = _format(request, ("pdf", "docx", "csv"))
    doc = await gw(request).report_docs.daily(request.match_info["id"], date_param(request))
    fn = {"pdf": pdf.daily_pdf, "docx": word.daily_docx, "csv": text.daily_csv}[fmt]
    return _file(await render(fn, doc), fmt, f"daily-report-{doc.chain_id}-{doc.units and doc.period}")


@routes.get("/v1/events/{id}/after-action")
async def after_action(request: web.Request) -> web.Response:
    require(request, "events:read")
    fmt = _format(request, ("pdf", "docx", "html"))
    doc = await gw(request).report_docs.after_action(request.match_info["id"])
    fn = {"pdf": pdf.after_action_pdf, "docx": word.after_action_docx, "html": text.after_action_html}[fmt]
    return _file(await render(fn, doc), fmt, f"after-action-{doc.chain_id}")
