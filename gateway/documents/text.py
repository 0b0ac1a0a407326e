"""The roll-up as CSV (one row per unit, UTF-8 with a BOM so spreadsheet programs read the
Chinese) and the after-action report as one self-contained HTML page (the chart inline)."""

from __future__ import annotations

import base64
import csv
import functools
import io

from jinja2 import Environment, PackageLoader, Template

from gateway.documents.chart import confirmation_chart
from gateway.flows.report_docs import AfterActionDoc, DailyDoc


def daily_csv(d: DailyDoc) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["单位", "单位ID", "报送", "报送时间", "逾期", "版本", "录入", "已落实", "未落实",
                *[label for _, label in d.figure_labels], "情况说明", "演练" if d.drill else "日期"])
    for u in d.units:
        w.writerow([u.name, u.unit_id, "是" if u.reported else "否", u.submitted, "是" if u.late else "",
                    u.version or "", u.entered, "；".join(u.done), "；".join(u.not_done),
                    *["" if u.figures.get(k) is None else u.figures.get(k) for k, _ in d.figure_labels], u.text,
                    "【演练】" if d.drill else d.period])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


@functools.cache
def _template() -> Template:
    env = Environment(loader=PackageLoader("gateway", "templates"), autoescape=True)
    return env.get_template("after_action.html.j2")


def after_action_html(a: AfterActionDoc) -> bytes:
    chart = base64.b64encode(confirmation_chart(a.curves, drill=a.drill)).decode()
    units = [(u.name, u.first_reached, u.confirmed, u.via, u.escalations, u.reports) for u in a.units]
    dailies = [(d, [(u.name, (u.submitted + ("（逾期）" if u.late else "")) if u.reported else "未报送",
                     "；".join(u.done), "；".join(u.not_done), u.text) for u in d.units]) for d in a.dailies]
    return _template().render(doc=a, chart=chart, units=units, dailies=dailies).encode("utf-8")
