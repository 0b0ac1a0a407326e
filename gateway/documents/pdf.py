"""The roll-up and the after-action report as PDF (reportlab). Text is set in reportlab's
built-in CID font STSong-Light, which PDF readers supply themselves: nothing to install or embed.
A drill's document says 【演练】 at the top of every page."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from typing import Any

from gateway.documents.chart import confirmation_chart
from gateway.flows.report_docs import AfterActionDoc, DailyDoc

FONT = "STSong-Light"


@functools.cache
def _styles() -> dict[str, Any]:
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    base = ParagraphStyle("base", fontName=FONT, fontSize=10, leading=14, wordWrap="CJK")
    return {
        "title": ParagraphStyle("title", parent=base, fontSize=16, leading=22, alignment=1, spaceAfter=6),
        "meta": ParagraphStyle("meta", parent=base, fontSize=10, alignment=1, spaceAfter=10),
        "h2": ParagraphStyle("h2", parent=base, fontSize=12.5, leading=18, spaceBefore=10, spaceAfter=4),
        "body": base,
        "cell": ParagraphStyle("cell", parent=base, fontSize=8.5, leading=11),
        "caption": ParagraphStyle("caption", parent=base, fontSize=10, alignment=1, spaceAfter=8),
    }


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _p(text: str, style: str = "body") -> Any:
    from reportlab.platypus import Paragraph

    return Paragraph(_esc(text), _styles()[style])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float]) -> Any:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    data = [[_p(h, "cell") for h in header], *[[_p(str(c), "cell") for c in r] for r in rows]]
    t = Table(data, colWidths=list(widths), repeatRows=1)
    t.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey), ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef7")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3)]))
    return t


def _build(story: list[Any], *, drill: bool, title: str) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    def page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 9)
        if drill:
            canvas.setFillColorRGB(0.75, 0, 0)
            canvas.setFont(FONT, 12)
            canvas.drawString(18 * mm, A4[1] - 12 * mm, "【演练】")
            canvas.setFont(FONT, 9)
            canvas.setFillColorRGB(0, 0, 0)
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"{title}  第{doc.page}页")
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=16 * mm, rightMargin=16 * mm, topMargin=18 * mm,
                            bottomMargin=16 * mm, title=title, author="泽州县重污染天气应急指挥部办公室")
    doc.build(story, onFirstPage=page, onLaterPages=page)
    return buf.getvalue()


def _daily_story(doc: DailyDoc, *, heading: str = "title") -> list[Any]:
    story = [_p(("【演练】" if doc.drill else "") + doc.title, heading)]
    meta = f"{doc.level}　报送截止：{doc.due}　生成：{doc.generated}"
    story.append(_p(meta, "meta" if heading == "title" else "body"))
    story.append(_p(f"应报 {len(doc.units)} 个单位，已报 {doc.reported} 个，未报 {len(doc.missing)} 个。"))
    if doc.totals:
        story.append(_p("数据汇总：" + "；".join(f"{label} {value}" for label, value in doc.totals) + "。"))
    story.append(_p("未报送单位：" + ("、".join(doc.missing) if doc.missing else "无") + "。"))
    labels = [label for _, label in doc.figure_labels]
    rows = []
    for u in doc.units:
        status = (f"{u.submitted}{'（逾期）' if u.late else ''}\n第{u.version}版，{u.entered}" if u.reported
                  else "未报送")
        measures = ("已落实：" + "；".join(u.done) if u.done else "") + (
            ("\n未落实：" + "；".join(u.not_done)) if u.not_done else "")
        figures = [("" if u.figures.get(k) is None else str(u.figures.get(k))) for k, _ in doc.figure_labels]
        rows.append([u.name, status, measures, *figures, u.text])
    fixed = 30 + 34 + 20  # mm of name, status and the text's minimum
    fig_w = min(16.0, (178 - fixed - 40) / max(1, len(labels))) if labels else 0.0
    from reportlab.lib.units import mm

    measures_w = 178 - fixed - fig_w * len(labels) - 20
    widths = [30 * mm, 34 * mm, measures_w * mm, *[fig_w * mm] * len(labels), 40 * mm]
    story.append(_table(["单位", "报送", "措施落实情况", *labels, "情况说明"], rows, widths))
    return story


def daily_pdf(doc: DailyDoc) -> bytes:
    return _build(_daily_story(doc), drill=doc.drill, title=doc.title)


def after_action_pdf(doc: AfterActionDoc) -> bytes:
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, PageBreak

    story = [_p(("【演练】" if doc.drill else "") + doc.title, "title"),
             _p(f"响应时段：{doc.period}　生成：{doc.generated}", "meta"),
             _p("一、响应过程", "h2"),
             _table(["时间", "事项"], doc.timeline, [40 * mm, 138 * mm]),
             _p("二、签收情况", "h2")]
    png = confirmation_chart(doc.curves, drill=doc.drill)
    story += [Image(io.BytesIO(png), width=170 * mm, height=85 * mm), _p(doc.chart_title, "caption")]
    story.append(_table(["单位", "首次送达", "签收时间", "签收方式", "催办次数", "报送"],
                        [(u.name, u.first_reached, u.confirmed, u.via, str(u.escalations), u.reports)
                         for u in doc.units],
                        [44 * mm, 28 * mm, 28 * mm, 22 * mm, 18 * mm, 38 * mm]))
    story.append(_p("三、送达失败（按原因）", "h2"))
    story.append(_table(["渠道", "原因", "次数"], [(c, r, str(n)) for c, r, n in doc.failures] or [("—", "无", "0")],
                        [30 * mm, 118 * mm, 30 * mm]))
    story.append(_p("四、公众信息发布", "h2"))
    story.append(_table(["内容", "申请", "审批", "发布"], doc.public or [("—", "无", "", "")],
                        [74 * mm, 36 * mm, 40 * mm, 28 * mm]))
    story.append(_p("五、信息报送", "h2"))
    if not doc.dailies:
        story.append(_p("本次响应无信息报送记录。"))
    for i, daily in enumerate(doc.dailies):
        if i:
            story.append(PageBreak())
        story += _daily_story(daily, heading="h2")
    return _build(story, drill=doc.drill, title=doc.title)
