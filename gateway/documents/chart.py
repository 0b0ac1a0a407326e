"""The after-action report's chart: units confirmed over time, one step line per event of the
chain. Drawn with matplotlib's object API on the Agg canvas (no pyplot state, safe in a worker
thread); labels in Chinese when a CJK font is installed (e.g. Debian's fonts-noto-cjk), else in
English, so a missing font never draws empty boxes."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

from gateway.flows.report_docs import EventCurve

_CJK_NAMES = ("Noto Sans CJK SC", "Noto Serif CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei",
              "Microsoft YaHei", "PingFang SC")


@functools.cache
def cjk_font() -> str | None:
    """The family name of an installed CJK font, or None."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return next((n for n in _CJK_NAMES if n in names), None)


def confirmation_chart(curves: Sequence[EventCurve], *, drill: bool = False) -> bytes:
    """A PNG (1200×600 px) of the confirmations of each event over minutes since it was sent."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    font = cjk_font()
    fig = Figure(figsize=(8, 4), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    from matplotlib.font_manager import FontProperties

    fp = FontProperties(family=font) if font else FontProperties()
    longest = max([c.minutes[-1] for c in curves if c.minutes] or [1.0])
    for c in curves:
        xs = [0.0, *c.minutes, longest * 1.05]  # the count stays where it ended, to the right edge
        ys = [*range(len(c.minutes) + 1), len(c.minutes)]
        label = f"{c.label}（{len(c.minutes)}/{c.required}）" if font else f"{c.code} ({len(c.minutes)}/{c.required})"
        ax.step(xs, ys, where="post", linewidth=1.8, label=label)
    ax.set_xlim(0, longest * 1.05)
    ax.set_ylim(0, max([c.required for c in curves] or [1]) + 1)
    ax.set_xlabel("发出后分钟数" if font else "minutes after the event was sent", fontproperties=fp)
    ax.set_ylabel("已签收单位数" if font else "units confirmed", fontproperties=fp)
    title = "各单位签收进度（按事件）" if font else "Units confirmed over time, per event"
    ax.set_title(("【演练】" if font else "[DRILL] ") + title if drill else title, fontproperties=fp)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower right", prop=FontProperties(family=font, size=8) if font else {"size": 8})
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
