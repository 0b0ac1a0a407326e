"""The office's documents through the real daemon: the day's roll-up as CSV (one row per unit),
DOCX (opens with python-docx, holds the per-unit table) and PDF; the after-action report as PDF
(pdftoppm renders non-blank pages, pdftotext finds every unit's name and the chart's title), DOCX
and HTML; a drill's documents say 【演练】 on every page."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import DaemonFactory
from tests.reports_support import REPORTERS, set_clock, tomorrow_at
from tests.support.daemon import TOKENS, Daemon
from tests.support.receiver import Receiver
from tests.test_reports import _form, issue_and_request, start

ANSWERS = {"a.measures": "done", "a.cleaning": "done", "a.burning": "not_done", "n.burning": "两处正在处置",
           "a.curtail": "done", "f.enterprises_curtailed": "12", "f.sites_stopped": "3", "f.inspections": "40",
           "text": "已按要求落实。"}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/test-deps.sh installs poppler-utils as root)")
    return path


async def fetch(d: Daemon, path: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as s, s.get(
            d.url + path, headers={"Authorization": f"Bearer {TOKENS['reader'][0]}"}) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.read()


def pdf_text(pdf: Path, page: int | None = None) -> str:
    """The PDF's text without whitespace (a name wrapped in a narrow table cell is found whole)."""
    args = [need("pdftotext")] + (["-f", str(page), "-l", str(page)] if page else [])
    out = subprocess.run([*args, str(pdf), "-"], capture_output=True, text=True, check=True, timeout=60).stdout
    return "".join(out.split())


def pages(pdf: Path, out: Path) -> list[Path]:
    subprocess.run([need("pdftoppm"), "-r", "40", "-png", str(pdf), str(out / "page")], check=True, timeout=60)
    return sorted(out.glob("page-*.png"))


def non_blank(png: Path) -> bool:
    from PIL import Image

    with Image.open(png) as im:
        lo, _ = im.convert("L").getextrema()
    return bool(lo < 128)  # something dark was drawn: text, rules, the chart


async def chain_with_reports(d: Daemon, receiver: Receiver, clock: Path, chain: str) -> dict[str, str]:
    urls = await issue_and_request(d, receiver, clock, chain)
    assert (await _form(urls["township_xiacun"], ANSWERS))[0] == 200
    entry = {"chain_id": chain, "date": tomorrow_at("12:00").date().isoformat(),
             "unit_id": "county_housing_construction_bureau",
             "actions": {"dust": {"done": True}, "earthworks": {"done": False, "note": "一处豁免工程"}},
             "figures": {"sites_stopped": 17, "inspections": 22}, "text": "电话报送"}
    s, body = await d.call("POST", "/v1/reports", token="office", json_body=entry)
    assert s == 201, body
    _, ev = await d.call("GET", f"/v1/events/{chain}", token="reader")
    for dl in ev["deliveries"][:2]:  # two units confirm the warning: points on the chart
        assert (await d.call("POST", f"/v1/deliveries/{dl['id']}/ack", json_body={}))[0] == 200
    s, _ = await d.call("POST", "/v1/events", json_body={"id": f"{chain}-up", "type": "warning.upgraded",
                                                         "level": "red", "supersedes": chain})
    assert s == 202
    s, _ = await d.call("POST", "/v1/events", json_body={"id": f"{chain}-lift", "type": "warning.lifted",
                                                         "supersedes": f"{chain}-up"})
    assert s == 202
    _, roster = await d.call("GET", "/v1/roster", token="reader")
    return {u["id"]: u["name"] for u in roster["units"] if u["id"] in [*REPORTERS, "zezhou_ecology_branch"]}


async def test_daily_report_and_after_action_documents(
        receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d, clock = await start(receiver, daemon_factory, tmp_path)
    names = await chain_with_reports(d, receiver, clock, "doc-1")
    day = tomorrow_at("12:00").date().isoformat()
    set_clock(clock, tomorrow_at("14:40"))

    s, ctype, body = await fetch(d, f"/v1/events/doc-1/daily-report?date={day}&format=csv")
    assert s == 200 and ctype.startswith("text/csv")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert len(rows) == 1 + len(REPORTERS)  # a header, then one row per unit
    by_id = {r[1]: r for r in rows[1:]}
    assert set(by_id) == set(REPORTERS) and by_id["township_dadonggou"][2] == "否"
    header = rows[0]
    assert by_id["county_housing_construction_bureau"][header.index("停工工地数")] == "17"

    s, ctype, body = await fetch(d, f"/v1/events/doc-1/daily-report?date={day}&format=docx")
    assert s == 200 and "wordprocessingml" in ctype
    from docx import Document

    tables = Document(io.BytesIO(body)).tables
    cells = [[c.text for c in row.cells] for row in tables[0].rows]
    assert cells[0][:3] == ["单位", "报送", "措施落实情况"]
    assert {r[0] for r in cells[1:]} == {names[u] for u in REPORTERS}

    s, ctype, body = await fetch(d, f"/v1/events/doc-1/daily-report?date={day}")  # PDF by default
    assert s == 200 and ctype == "application/pdf" and body.startswith(b"%PDF")
    (tmp_path / "daily.pdf").write_bytes(body)
    text = pdf_text(tmp_path / "daily.pdf")
    assert all(names[u] in text for u in REPORTERS) and "出动检查人次" in text and "演练" not in text

    s, ctype, body = await fetch(d, "/v1/events/doc-1-lift/after-action?format=pdf")
    assert s == 200 and ctype == "application/pdf"
    pdf = tmp_path / "after-action.pdf"
    pdf.write_bytes(body)
    pngs = pages(pdf, tmp_path)
    assert pngs and all(non_blank(p) for p in pngs)
    text = pdf_text(pdf)
    assert all(name in text for name in names.values()), text[:3000]
    assert "图1各单位签收进度（按事件）" in text and "解除" in text and "升级" in text
    s, ctype, body = await fetch(d, "/v1/events/doc-1/after-action?format=docx")
    assert s == 200
    tables = Document(io.BytesIO(body)).tables
    reach = next(t for t in tables if t.rows[0].cells[0].text == "单位" and t.rows[0].cells[1].text == "首次送达")
    assert {r.cells[0].text for r in reach.rows[1:]} >= set(names.values())
    s, ctype, body = await fetch(d, "/v1/events/doc-1/after-action?format=html")
    assert s == 200 and ctype.startswith("text/html")
    assert "data:image/png;base64," in body.decode() and "图1 各单位签收进度" in body.decode()

    assert (await fetch(d, "/v1/events/doc-1/after-action?format=xls"))[0] == 400
    assert (await fetch(d, "/v1/events/doc-1/daily-report?date=2020-01-01"))[0] == 404
    assert (await fetch(d, "/v1/events/nope/after-action"))[0] == 404
    assert (await d.call("GET", "/v1/events/doc-1/after-action", token=None))[0] == 401


async def test_a_drill_gets_the_same_documents_marked_on_every_page(
        receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d, clock = await start(receiver, daemon_factory, tmp_path)
    s, _ = await d.call("POST", "/v1/events", json_body={"id": "drill-1", "type": "warning.issued", "level": "orange",
                                                         "status": "exercise"})
    assert s == 202
    set_clock(clock, tomorrow_at("12:00"))
    _, body = await d.call("GET", "/v1/events/drill-1/reports", token="reader")
    for _ in range(400):
        _, body = await d.call("GET", "/v1/events/drill-1/reports", token="reader")
        if body["requests"]:
            break
        await __import__("asyncio").sleep(0.1)
    assert body["requests"] and body["requests"][0]["status"] == "exercise"
    s, _, pdf_body = await fetch(d, "/v1/events/drill-1/after-action")
    assert s == 200
    pdf = tmp_path / "drill.pdf"
    pdf.write_bytes(pdf_body)
    n = len(pages(pdf, tmp_path))
    assert n >= 1 and all("【演练】" in pdf_text(pdf, i) for i in range(1, n + 1))
    s, _, daily = await fetch(d, "/v1/events/drill-1/daily-report")
    (tmp_path / "drill-daily.pdf").write_bytes(daily)
    assert s == 200 and "【演练】" in pdf_text(tmp_path / "drill-daily.pdf", 1)
    s, _, csv_body = await fetch(d, "/v1/events/drill-1/daily-report?format=csv")
    assert s == 200 and "【演练】" in csv_body.decode("utf-8-sig")
