"""Message rendering: Chinese text per event type and level, per unit and channel.

Templates are Jinja2 files compiled once; the per-event context is built once and reused for
every unit, so a fan-out to thousands costs one template call per unit and channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from contacts.model import Actions
from gateway.events import Event, EventType, Status

BEIJING = ZoneInfo("Asia/Shanghai")
LEVELS = {"yellow": ("黄色", "Ⅲ"), "orange": ("橙色", "Ⅱ"), "red": ("红色", "Ⅰ"), "blue": ("蓝色", "Ⅳ")}
DRILL_MARK = {Status.EXERCISE: "【演练】", Status.TEST: "【测试】", Status.ACTUAL: ""}
DRILL_SPOKEN = {Status.EXERCISE: "演练，演练。", Status.TEST: "测试，测试。", Status.ACTUAL: ""}

# GSM 03.38 basic set; the extension set costs two septets. Anything else forces UCS-2.
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")


class RenderError(ValueError):
    """A message cannot be sent as configured (e.g. SMS over the segment budget)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def sms_segments(text: str) -> int:
    """Segments an SMS needs: GSM-7 160/153, else UCS-2 70/67 (astral chars count 2)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXT for ch in text):
        units = sum(2 if ch in _GSM_EXT else 1 for ch in text)
        single, multi = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2  # UTF-16 code units: astral chars are 2
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def _when(dt: datetime | None, fallback: datetime) -> str:
    t = (dt or fallback).astimezone(BEIJING)
    minute = f"{t.minute}分" if t.minute else ""
    return f"{t.month}月{t.day}日{t.hour}时{minute}"


def _span(td: timedelta) -> str:
    mins = int(td.total_seconds() // 60)
    if mins % 60 == 0:
        return f"{mins // 60}小时"
    return f"{mins}分钟"


@dataclass(frozen=True, slots=True)
class EventContext:
    values: dict[str, Any]
    event_json: str


class Renderer:
    """Renders SMS, voice and webhook bodies."""

    def __init__(self, *, signature: str = "【泽州县人民政府】", max_sms_segments: int = 3):
        self.signature = signature
        self.max_sms_segments = max_sms_segments
        env = Environment(
            loader=PackageLoader("gateway", "templates"),
            undefined=StrictUndefined,
            autoescape=False,  # plain text for SMS and speech, never HTML
            keep_trailing_newline=False,
        )
        self._sms = env.get_template("sms.j2")
        self._voice = env.get_template("voice.j2")

    def context(self, event: Event, event_id: str, accepted_at: datetime, *, approval: str = "") -> EventContext:
        """`approval` names the sign-off in every message (e.g. 经县指挥部批准), or is empty."""
        lv_name, roman = LEVELS.get(event.level.value if event.level else "", ("", ""))
        until = (
            f"预计{_when(event.valid_until, accepted_at)}解除" if event.valid_until else "解除时间另行通知"
        )
        values = {
            "signature": self.signature,
            "drill": DRILL_MARK[event.status],
            "drill_spoken": DRILL_SPOKEN[event.status],
            "approval": f"{approval}，" if approval else "",
            "type": event.type.value,
            "lv": f"{lv_name}({roman}级)" if lv_name else "",
            "roman": roman,
            "start": _when(event.valid_from, accepted_at),
            "until_text": until,
            "headline": event.headline,
            "body": event.body,
            # which of a unit's action lines this event asks for
            "action_key": "lift" if event.type is EventType.WARNING_LIFTED else
                          (event.level.value if event.level else None),
        }
        data = event.canonical()
        data["id"] = event_id
        return EventContext(values, json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    @staticmethod
    def action(ctx: EventContext, actions: Actions) -> str:
        """The unit's own action line for this event (its level, or lift); empty when it has none."""
        if not str(ctx.values["type"]).startswith("warning."):
            return ""
        return actions.at(ctx.values["action_key"])

    def sms(self, ctx: EventContext, *, unit_name: str, ack: timedelta | None, ack_url: str = "",
            action: str = "", report_url: str = "") -> str:
        """The SMS text (`report_url`: a report request's form link). Raises RenderError when it
        exceeds the segment budget."""
        text = self._sms.render(ctx.values, unit_name=unit_name, ack=_span(ack) if ack else "",
                                ack_url=ack_url, action=action, report_url=report_url).strip()
        text = text.replace("\n", "")
        n = sms_segments(text)
        if n > self.max_sms_segments:
            raise RenderError(
                f"the SMS for {unit_name} needs {n} segments ({len(text)} chars); the budget is "
                f"{self.max_sms_segments}: shorten headline/body",
                field="$.body",
            )
        return text

    def voice(self, ctx: EventContext, *, unit_name: str, ack: timedelta | None, action: str = "") -> str:
        """The text spoken on the unit's call."""
        return self._voice.render(ctx.values, unit_name=unit_name, ack=bool(ack),
                                  action=action).replace("\n", "").strip()

    def webhook(
        self, ctx: EventContext, *, unit_id: str, unit_name: str, text: str, ack_deadline: str | None,
        action: str = "",
    ) -> str:
        """The webhook JSON, assembled around the event JSON serialised once per event."""
        unit = json.dumps({"id": unit_id, "name": unit_name, "action": action or None}, ensure_ascii=False)
        tail = json.dumps(
            {"text": text, "ack": {"required": ack_deadline is not None, "deadline": ack_deadline}},
            ensure_ascii=False,
        )
        return '{"event":' + ctx.event_json + ',"unit":' + unit + "," + tail[1:]
