"""CAP 1.2 intake: parse without trusting the XML, validate against the shipped OASIS schema,
map one alert to one Event. The mapping is documented in deploy/cap/README.md.

Order of checks, so nothing is accepted half-way: well-formed and harmless (400), schema-valid
(422 `invalid_cap`), supported status and msgType, a resolvable reference, a derivable level,
a valid Event (422 with a CAP path in `field`); only then is the event submitted.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import xmlschema
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pydantic import ValidationError

from gateway.config import CapCfg
from gateway.events import Event, EventType, Level, Status
from gateway.store.base import Store, UnknownEvent

__all__ = ["CAP_NS", "CapAlert", "CapError", "Referenced", "cap_schema", "colour_level", "event_from_alert",
           "event_id_for", "find_reference", "parse_cap", "parse_xml", "read_alert", "validate"]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
XSD_PATH = Path(__file__).parent / "schemas" / "CAP-v1.2.xsd"
_NS = "{" + CAP_NS + "}"
_ID_OK = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9._:\-]+")
# A CAP alert is 5 levels deep (alert/info/area/geocode/value); an xmldsig Signature a few more.
# Anything far deeper is not CAP, and refusing it early keeps the validator's recursion bounded.
MAX_DEPTH = 32
LEVEL_ORDER = {Level.BLUE: 0, Level.YELLOW: 1, Level.ORANGE: 2, Level.RED: 3}
_STATUS = {"Actual": Status.ACTUAL, "Exercise": Status.EXERCISE, "Test": Status.TEST}
# Where each Event field comes from, to name the CAP element when the Event refuses a value.
_SOURCE = {"headline": "headline", "body": "description", "measures": "instruction", "area": "area/areaDesc",
           "valid_from": "onset", "valid_until": "expires", "issued_by": "senderName"}


class CapError(Exception):
    """A CAP message the gateway refuses; becomes the API error (status, code, field)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Reference:
    sender: str
    identifier: str
    sent: datetime


@dataclass(frozen=True, slots=True)
class CapInfo:
    index: int  # 1-based position among the alert's <info> blocks, as in XPath
    language: str
    severity: str
    parameters: tuple[tuple[str, str], ...]
    sender_name: str | None
    headline: str | None
    description: str | None
    instruction: str | None
    onset: datetime | None
    effective: datetime | None
    expires: datetime | None
    areas: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"/alert/info[{self.index}]"


@dataclass(frozen=True, slots=True)
class CapAlert:
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    references: tuple[Reference, ...]
    info: CapInfo | None


@dataclass(frozen=True, slots=True)
class Referenced:
    """The stored event a CAP Update or Cancel continues."""

    event_id: str
    level: Level | None


@functools.cache
def cap_schema() -> xmlschema.XMLSchema:
    """The OASIS CAP 1.2 schema shipped in gateway/schemas, built once per process (~0.2 s)."""
    return xmlschema.XMLSchema(str(XSD_PATH))


def parse_xml(raw: bytes) -> Element:
    """Parse with defusedxml: no DTD at all, so no entity expansion and no external fetches.

    Raises:
        CapError: 400 `hostile_xml` for a DTD, entity or external reference; 400 `malformed_xml`.
    """
    try:
        root: Element = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise CapError(400, "hostile_xml", f"refused: the XML declares a DTD or entities ({type(exc).__name__});"
                       " CAP needs neither") from exc
    except ParseError as exc:
        raise CapError(400, "malformed_xml", f"the body is not well-formed XML: {exc}") from exc
    return root


def _depth(root: Element) -> int:
    deepest, stack = 0, [(root, 1)]
    while stack:  # iterative: a hostile nesting must not exhaust the Python stack
        el, d = stack.pop()
        deepest = max(deepest, d)
        if d <= MAX_DEPTH:
            stack.extend((child, d + 1) for child in el)
    return deepest


def _strip_ns(text: str) -> str:
    return text.replace(_NS, "").replace("'cap:", "'")  # xmlschema names elements {ns}tag or 'cap:tag'


def validate(root: Element) -> None:
    """Validate against the CAP 1.2 XSD; location hints in the document are never followed.

    Raises:
        CapError: 422 `invalid_cap` naming the first offending element's path in `field`.
    """
    if _depth(root) > MAX_DEPTH:
        raise CapError(422, "invalid_cap", f"elements nested deeper than {MAX_DEPTH} levels: not CAP", field="/")
    error = next(cap_schema().iter_errors(root, use_location_hints=False), None)
    if error is not None:
        path = _strip_ns(error.path or "/")
        reason = _strip_ns(error.reason or error.message)
        raise CapError(422, "invalid_cap", f"{path}: {reason}", field=path)


def _text(el: Element, name: str) -> str | None:
    child = el.find(_NS + name)
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def _time(el: Element, name: str, path: str) -> datetime | None:
    raw = _text(el, name)
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError as exc:
        raise CapError(422, "invalid_cap", f"{path}/{name}: not a date-time: {raw}", field=f"{path}/{name}") from exc


def _pairs(el: Element, name: str) -> tuple[tuple[str, str], ...]:
    return tuple(((p.findtext(_NS + "valueName") or "").strip(), (p.findtext(_NS + "value") or "").strip())
                 for p in el.findall(_NS + name))


def _read_info(el: Element, index: int) -> CapInfo:
    path = f"/alert/info[{index}]"
    return CapInfo(
        index=index, language=_text(el, "language") or "en-US", severity=_text(el, "severity") or "Unknown",
        parameters=_pairs(el, "parameter"), sender_name=_text(el, "senderName"), headline=_text(el, "headline"),
        description=_text(el, "description"), instruction=_text(el, "instruction"),
        onset=_time(el, "onset", path), effective=_time(el, "effective", path), expires=_time(el, "expires", path),
        areas=tuple(d for a in el.findall(_NS + "area") if (d := _text(a, "areaDesc"))),
    )


def _pick_info(infos: list[Element]) -> CapInfo | None:
    """The <info> in zh-CN, else the first in any Chinese, else the first: one event per alert."""
    langs = [(i.findtext(_NS + "language") or "en-US").strip().casefold() for i in infos]
    for n in ([n for n, lang in enumerate(langs) if lang == "zh-cn"]
              + [n for n, lang in enumerate(langs) if lang.startswith("zh")] + [0]):
        if n < len(infos):
            return _read_info(infos[n], n + 1)
    return None


def _references(raw: str | None) -> tuple[Reference, ...]:
    refs = []
    for triple in (raw or "").split():
        parts = triple.split(",")
        try:
            if len(parts) != 3:
                raise ValueError(triple)
            refs.append(Reference(parts[0], parts[1], datetime.fromisoformat(parts[2])))
        except ValueError as exc:
            raise CapError(422, "invalid_cap", f"/alert/references: {triple!r} is not sender,identifier,sent",
                           field="/alert/references") from exc
    return tuple(refs)


def read_alert(root: Element) -> CapAlert:
    """The fields the gateway uses, from a schema-valid alert.

    Raises:
        CapError: 422 `invalid_cap` for references or times the schema lets through.
    """
    sent = _time(root, "sent", "/alert")
    if sent is None:  # the schema requires it; reached only when read_alert is called unvalidated
        raise CapError(422, "invalid_cap", "/alert/sent: missing", field="/alert/sent")
    return CapAlert(
        identifier=root.findtext(_NS + "identifier") or "", sender=root.findtext(_NS + "sender") or "",
        sent=sent, status=_text(root, "status") or "", msg_type=_text(root, "msgType") or "",
        references=_references(root.findtext(_NS + "references")), info=_pick_info(root.findall(_NS + "info")),
    )


def parse_cap(raw: bytes) -> CapAlert:
    """Parse, validate and read one CAP message (CPU only; run it off the event loop).

    Raises:
        CapError: 400 hostile or malformed XML, 422 schema-invalid CAP.
    """
    root = parse_xml(raw)
    validate(root)
    return read_alert(root)


def event_id_for(identifier: str) -> str:
    """The event id of a CAP identifier: itself when it fits the id pattern; otherwise the
    offending characters become `_` and a digest of the full identifier keeps ids distinct."""
    if _ID_OK.fullmatch(identifier):
        return identifier
    digest = hashlib.sha256(identifier.encode()).hexdigest()[:16]
    return f"cap:{_ID_BAD_CHARS.sub('_', identifier)[:96]}:{digest}"


def colour_level(value: str, table: Mapping[str, str]) -> Level | None:
    """A level from a colour word or grade: an exact entry first, then the longest entry the
    value contains (so `橙色预警` and `橙色(Ⅱ级)` are orange, `III级` is not `I级`)."""
    folded = {k.casefold(): v for k, v in table.items()}
    v = value.strip().casefold()
    if v in folded:
        return Level(folded[v])
    for key in sorted(folded, key=len, reverse=True):
        if len(key) >= 2 and key in v:
            return Level(folded[key])
    return None


def derive_level(info: CapInfo, cfg: CapCfg) -> Level | None:
    """A colour <parameter> first (names in `cap.level_parameters`), else `cap.severity_levels`."""
    names = {n.casefold() for n in cfg.level_parameters}
    for name, value in info.parameters:
        if name.casefold() in names and (level := colour_level(value, cfg.level_values)) is not None:
            return level
    severities: Mapping[str, str] = cfg.severity_levels
    mapped = severities.get(info.severity)
    return Level(mapped) if mapped else None


def check_supported(alert: CapAlert) -> None:
    """Raises CapError 422 for a status or msgType the gateway does not act on."""
    if alert.status not in _STATUS:
        raise CapError(422, "unsupported_cap_status", f"status {alert.status} is not acted on: only Actual, "
                       "Exercise and Test", field="/alert/status")
    if alert.msg_type not in ("Alert", "Update", "Cancel"):
        raise CapError(422, "unsupported_msg_type", f"msgType {alert.msg_type} is not acted on: only Alert, "
                       "Update and Cancel", field="/alert/msgType")
    if alert.msg_type != "Alert" and not alert.references:
        raise CapError(422, "missing_references", f"a CAP {alert.msg_type} must name the message it continues",
                       field="/alert/references")


async def find_reference(store: Store, alert: CapAlert) -> Referenced:
    """The most recently sent referenced message that the gateway knows.

    Raises:
        CapError: 422 `unknown_reference` when none of them was received.
    """
    for ref in sorted(alert.references, key=lambda r: r.sent, reverse=True):
        try:
            view = await store.get_event(event_id_for(ref.identifier))
        except UnknownEvent:
            continue
        return Referenced(view["id"], Level(view["level"]) if view.get("level") else None)
    names = ", ".join(r.identifier for r in alert.references)
    raise CapError(422, "unknown_reference", f"references name no message this gateway received: {names}",
                   field="/alert/references")


def _type_and_level(alert: CapAlert, cfg: CapCfg, ref: Referenced | None) -> tuple[EventType, Level | None]:
    if alert.msg_type == "Cancel":
        return EventType.WARNING_LIFTED, None
    level = derive_level(alert.info, cfg) if alert.info is not None else None
    if level is None:
        where = f"{alert.info.path}/severity" if alert.info else "/alert/info"
        raise CapError(422, "no_level", "no warning level: no colour <parameter> and no mapped <severity>",
                       field=where)
    if alert.msg_type == "Alert":
        return EventType.WARNING_ISSUED, level
    if ref is None:  # check_supported and find_reference come first; this guards direct callers
        raise CapError(422, "missing_references", "an Update must name the message it continues",
                       field="/alert/references")
    if ref.level is None:
        raise CapError(422, "unmappable_cap", f"the referenced event {ref.event_id} has no level to compare with",
                       field="/alert/references")
    step = LEVEL_ORDER[level] - LEVEL_ORDER[ref.level]
    kind = EventType.WARNING_UPGRADED if step > 0 else EventType.WARNING_DOWNGRADED if step < 0 else \
        EventType.WARNING_EXTENDED
    return kind, level


def _info_fields(info: CapInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"headline": info.headline, "body": info.description,
                           "valid_from": info.onset or info.effective, "valid_until": info.expires}
    if info.areas:
        area = "；".join(info.areas)
        out["area"] = area if len(area) <= 100 else area[:99] + "…"  # a label; 100 chars is the Event limit
    if info.instruction:  # kept whole: split into measures of at most 500 characters each
        text = info.instruction
        out["measures"] = [{"category": "instruction", "text": text[i:i + 500]} for i in range(0, len(text), 500)]
    return {k: v for k, v in out.items() if v is not None}


def _mapping_error(exc: ValidationError, info: CapInfo | None) -> CapError:
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    base = info.path if info is not None else "/alert"
    field = f"{base}/{_SOURCE[name]}" if name in _SOURCE else "/alert"
    return CapError(422, "unmappable_cap", f"{field}: {err['msg'].removeprefix('Value error, ')}", field=field)


def event_from_alert(alert: CapAlert, cfg: CapCfg, ref: Referenced | None) -> Event:
    """The Event for a supported alert (see check_supported); `ref` is required for Update/Cancel.

    Raises:
        CapError: 422 `no_level`, `unmappable_cap` (a value the Event model refuses, e.g. a
        description over 2,000 characters).
    """
    etype, level = _type_and_level(alert, cfg, ref)
    data: dict[str, Any] = {"id": event_id_for(alert.identifier), "type": etype.value,
                            "status": _STATUS[alert.status].value}
    if level is not None:
        data["level"] = level.value
    if ref is not None and etype is not EventType.WARNING_ISSUED:
        data["supersedes"] = ref.event_id
    if alert.info is not None:
        data.update(_info_fields(alert.info))
    org = (alert.info.sender_name if alert.info and alert.info.sender_name else alert.sender)[:100]
    data["issued_by"] = {"org": org, "doc_no": alert.identifier[:100]}
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        raise _mapping_error(exc, alert.info) from exc
