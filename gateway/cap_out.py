"""CAP 1.2 output: a stored event as a CAP alert for the national warning release system,
public platforms and carriers (design.md section 5, `GET /v1/events/{id}/cap`).

The identifier follows GB/T 35965.1 (`ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N`, Beijing time); the
message validates against the OASIS schema in gateway/schemas (tests/test_cap.py checks it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from gateway.cap import CAP_NS
from gateway.config import CapCfg
from gateway.render import BEIJING, LEVELS

__all__ = ["CONTENT_TYPE", "cap_identifier", "cap_time", "render_cap"]

CONTENT_TYPE = "application/cap+xml"
_NS = "{" + CAP_NS + "}"
_MSG_TYPE = {
    "warning.issued": "Alert", "warning.upgraded": "Update", "warning.downgraded": "Update",
    "warning.extended": "Update", "warning.lifted": "Cancel", "advisory.issued": "Alert",
    "advisory.cancelled": "Cancel", "report.requested": "Alert", "notice": "Alert",
}
_EVENT_NAME = {"warning": "重污染天气预警", "advisory": "不利气象条件应对提示"}
# (urgency, severity, certainty) by level. Red is acted on at once; a forecast-based warning
# is "Likely"; blue (legacy IV) was an early heads-up.
_GRADING = {
    "red": ("Immediate", "Extreme", "Likely"), "orange": ("Expected", "Severe", "Likely"),
    "yellow": ("Expected", "Moderate", "Likely"), "blue": ("Future", "Minor", "Possible"),
}
_ENDED = ("Past", "Unknown", "Observed")  # a lift or cancellation: the hazard is over
_UNGRADED = ("Unknown", "Unknown", "Unknown")
_HEADLINE = {
    "warning.issued": "{area}启动{lv}重污染天气预警", "warning.upgraded": "{area}重污染天气预警升级为{lv}",
    "warning.downgraded": "{area}重污染天气预警调整为{lv}", "warning.extended": "{area}{lv}重污染天气预警延长",
    "warning.lifted": "{area}解除重污染天气预警", "advisory.issued": "{area}不利气象条件应对提示",
    "advisory.cancelled": "{area}解除不利气象条件应对提示", "report.requested": "{area}重污染天气应急措施落实情况报送",
}


def _beijing(dt: datetime) -> datetime:
    return dt.astimezone(BEIJING).replace(microsecond=0)


def cap_time(dt: datetime) -> str:
    """CAP's date-time: whole seconds and an explicit offset (the XSD refuses `Z` and fractions)."""
    return _beijing(dt).strftime("%Y-%m-%dT%H:%M:%S+08:00")


def cap_identifier(cfg: CapCfg, event_id: str, accepted: datetime) -> str:
    """`ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N` (31 characters): area, sector and unit codes, the
    acceptance time in Beijing time and one digit. The gateway keeps no per-second counter, so
    the digit comes from the event id: stable for an event, and events accepted in the same
    second differ unless their ids' digests share it."""
    n = int(hashlib.sha256(event_id.encode()).hexdigest(), 16) % 10
    return f"{cfg.area_code}{cfg.sector_code}{cfg.unit_code}_{_beijing(accepted):%Y%m%d%H%M%S}_{n}"


def _add(parent: Element, name: str, text: str | None) -> None:
    if text:
        SubElement(parent, _NS + name).text = text


def _pair(parent: Element, name: str, value_name: str, value: str) -> None:
    el = SubElement(parent, _NS + name)
    _add(el, "valueName", value_name)
    _add(el, "value", value)


def _accepted(view: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(view["accepted_at"]))


def _when(raw: Any) -> str | None:
    return cap_time(datetime.fromisoformat(raw)) if isinstance(raw, str) and raw else None


def _headline(view: Mapping[str, Any], data: Mapping[str, Any], cfg: CapCfg) -> str:
    if data.get("headline"):
        return str(data["headline"])
    name, roman, _ = LEVELS.get(str(view.get("level")), ("", "", ""))
    template = _HEADLINE.get(str(view["type"]), "{area}重污染天气应急通知")
    return template.format(area=data.get("area") or cfg.area_name, lv=f"{name}({roman}级)" if name else "")


def _response_type(etype: str, msg_type: str) -> str:
    if msg_type == "Cancel":
        return "AllClear"
    if etype.startswith("warning."):
        return "Execute"  # a warning starts the units' pre-planned response measures
    return "Prepare" if etype == "advisory.issued" else "None"


def _info(root: Element, cfg: CapCfg, view: Mapping[str, Any], msg_type: str) -> None:
    data: Mapping[str, Any] = view.get("event") or {}
    etype, level = str(view["type"]), view.get("level")
    info = SubElement(root, _NS + "info")
    _add(info, "language", "zh-CN")
    _add(info, "category", "Env")
    _add(info, "event", _EVENT_NAME.get(etype.split(".")[0], "重污染天气应急通知"))
    _add(info, "responseType", _response_type(etype, msg_type))
    grading = _ENDED if msg_type == "Cancel" else _GRADING.get(str(level), _UNGRADED)
    for name, value in zip(("urgency", "severity", "certainty"), grading, strict=True):
        _add(info, name, value)
    _add(info, "onset", _when(data.get("valid_from")))
    _add(info, "expires", _when(data.get("valid_until")))
    _add(info, "senderName", cfg.sender_name)
    _add(info, "headline", _headline(view, data, cfg))
    _add(info, "description", data.get("body"))
    _add(info, "instruction", "\n".join(str(m["text"]) for m in data.get("measures") or ()))
    if level in LEVELS:
        name, roman, _ = LEVELS[str(level)]
        _pair(info, "parameter", "level", str(level))
        _pair(info, "parameter", "预警颜色", name)
        _pair(info, "parameter", "预警级别", f"{roman}级")
    area = SubElement(info, _NS + "area")
    area_name = str(data.get("area") or cfg.area_name)
    _add(area, "areaDesc", area_name)
    if area_name == cfg.area_name:
        _pair(area, "geocode", "GB/T 2260", cfg.area_code)


def render_cap(cfg: CapCfg, view: Mapping[str, Any], superseded: Mapping[str, Any] | None) -> bytes:
    """The event (`Store.get_event` view) as a CAP 1.2 alert, UTF-8 with an XML declaration.

    `superseded` is the view of the event it supersedes, named in `references`. Exercise and
    test events keep scope Public and carry status Exercise / Test.
    """
    accepted = _accepted(view)
    msg_type = _MSG_TYPE.get(str(view["type"]), "Alert")
    root = Element(_NS + "alert")
    _add(root, "identifier", cap_identifier(cfg, str(view["id"]), accepted))
    _add(root, "sender", cfg.sender)
    _add(root, "sent", cap_time(accepted))
    _add(root, "status", str(view["status"]).capitalize())
    _add(root, "msgType", msg_type)
    _add(root, "scope", "Public")
    if superseded is not None:
        before = _accepted(superseded)
        ref = f"{cfg.sender},{cap_identifier(cfg, str(superseded['id']), before)},{cap_time(before)}"
        _add(root, "references", ref)
    _info(root, cfg, view, msg_type)
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS)
    return body
