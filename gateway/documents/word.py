"""The roll-up and the after-action report as Word documents (python-docx): 宋体 for Chinese,
tables with grid lines, the chart as a picture; a drill's document says 【演练】 in the header of
every page."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from gateway.documents.chart import confirmation_chart
from gateway.flows.report_docs import AfterActionDoc, DailyDoc


def _document(title: str, drill: bool) -> Any:
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml.ns import qn
    from docx.shared import Pt, RGBColor

    doc = Document()
    normal = doc.styles["Normal"]
    normal.font.name = "SimSun"
    normal.font.size = Pt(10.5)
    normal.element.rPr.rFonts.set(qn("w:eastAsia"), "宋体")
    header = doc.sections[0].header.paragraphs[0]
    header.text = ("【演练】" if drill else "") + title
    if drill:
        header.runs[0].font.color.rgb = RGBColor(0xB0, 0, 0)
    heading = doc.add_paragraph()
    heading.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = heading.add_run(("【演练】" if drill else "") + title)
    run.bold = True
    run.font.size = Pt(16)
    return doc


def _table(doc: Any, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Any:
    from docx.shared import Pt

    table = doc.add_table(rows=1, cols=len(header))
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, header, strict=True):
        cell.text = text
        cell.paragraphs[0].runs[0].bold = True
    for row in rows:
        cells = table.add_row().cells
        for cell, text in zip(cells, row, strict=True):
            cell.text = str(text)
    for row in table.rows:
        for cell in row.cells:
            for p in cell.paragraphs:
                for r in p.runs:
                    r.font.size = Pt(9)
    return table


def _daily_body(doc: Any, d: DailyDoc) -> None:
    doc.add_paragraph(f"{d.level}　报送截止：{d.due}　生成：{d.generated}")
    doc.add_paragraph(f"应报 {len(d.units)} 个单位，已报 {d.reported} 个，未报 {len(d.missing)} 个。")
    if d.totals:
        doc.add_paragraph("数据汇总：" + "；".join(f"{label} {value}" for label, value in d.totals) + "。")
    doc.add_paragraph("未报送单位：" + ("、".join(d.missing) if d.missing else "无") + "。")
    rows = []
    for u in d.units:
        late = "（逾期）" if u.late else ""
        status = f"{u.submitted}{late}，第{u.version}版，{u.entered}" if u.reported else "未报送"
        measures = "；".join([*(f"已落实：{x}" for x in u.done), *(f"未落实：{x}" for x in u.not_done)])
        figures = ["" if u.figures.get(k) is None else str(u.figures.get(k)) for k, _ in d.figure_labels]
        rows.append([u.name, status, measures, *figures, u.text])
    _table(doc, ["单位", "报送", "措施落实情况", *[label for _, label in d.figure_labels], "情况说明"], rows)


def _save(doc: Any) -> bytes:
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def daily_docx(d: DailyDoc) -> bytes:
    doc = _document(d.title, d.drill)
    _daily_body(doc, d)
    return _save(doc)


def after_action_docx(a: AfterActionDoc) -> bytes:
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Cm

    doc = _document(a.title, a.drill)
    doc.add_paragraph(f"响应时段：{a.period}　生成：{a.generated}")
    doc.add_heading("一、响应过程", level=2)
    _table(doc, ["时间", "事项"], a.timeline)
    doc.add_heading("二、签收情况", level=2)
    doc.add_picture(io.BytesIO(confirmation_chart(a.curves, drill=a.drill)), width=Cm(16))
    caption = doc.add_paragraph(a.chart_title)
    caption.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _table(doc, ["单位", "首次送达", "签收时间", "签收方式", "催办次数", "报送"],
           [(u.name, u.first_reached, u.confirmed, u.via, str(u.escalations), u.reports) for u in a.units])
    doc.add_heading("三、送达失败（按原因）", level=2)
    _table(doc, ["渠道", "原因", "次数"], [(c, r, str(n)) for c, r, n in a.failures] or [("—", "无", "0")])
    doc.add_heading("四、公众信息发布", level=2)
    _table(doc, ["内容", "申请", "审批", "发布"], a.public or [("—", "无", "", "")])
    doc.add_heading("五、信息报送", level=2)
    if not a.dailies:
        doc.add_paragraph("本次响应无信息报送记录。")
    for d in a.dailies:
        doc.add_heading(d.title, level=3)
        _daily_body(doc, d)
    return _save(doc)
