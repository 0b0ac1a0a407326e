"""CAP intake, the deciding half: what a read alert means for the gateway. Supported status and
msgType, our remit (`cap.areas`, `cap.event_kinds`), the message it continues, its level, and
the Event it becomes. Pure: no HTTP, and the store only through `find_reference`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.cap import LEVEL_ORDER, CapAlert, CapError, CapInfo, Reference, colour_level, event_id_for
from gateway.config import CapCfg
from gateway.events import Event, EventType, Level, Status
from gateway.store.base import UnknownEvent
from gateway.store.ports import Events

__all__ = ["Referenced", "check_remit", "check_supported", "derive_level", "event_from_alert", "find_reference",
           "unknown_reference_warning"]

_STATUS = {"Actual": Status.ACTUAL, "Exercise": Status.EXERCISE, "Test": Status.TEST}
# Where each Event field comes from, to name the CAP element when the Event refuses a value.
_SOURCE = {"headline": "headline", "body": "description", "measures": "instruction", "area": "area/areaDesc",
           "valid_from": "onset", "valid_until": "expires", "issued_by": "senderName"}


@dataclass(frozen=True, slots=True)
class Referenced:
    """The stored event a CAP Update or Cancel continues."""

    event_id: str
    level: Level | None


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


def _covers(ours: str, geocode: str) -> bool:
    """Whether an alert's geocode includes our area. GB/T 2260 codes nest: a province (xx0000)
    covers its cities and counties, a city (xxxx00) its counties, and a longer (township) code
    lies inside the county it starts with. Other code systems compare equal or not at all."""
    if geocode == ours or (geocode.isdigit() and ours.isdigit() and geocode.startswith(ours)):
        return True
    if not (geocode.isdigit() and ours.isdigit() and len(geocode) == 6 and len(ours) >= 6):
        return False
    if geocode.endswith("0000"):
        return geocode[:2] == ours[:2] and geocode != "000000"
    return geocode.endswith("00") and geocode[:4] == ours[:4]


def check_remit(alert: CapAlert, cfg: CapCfg) -> None:
    """Refuse what is outside the gateway's remit; an empty `cap.areas` / `cap.event_kinds`
    switches that rule off, and an alert that names no area at all is not refused for it.

    Raises:
        CapError: 422 `not_our_area` (no geocode covering ours, no area name containing ours),
        422 `not_our_event` (no category, eventCode or event text among `cap.event_kinds`).
    """
    info = alert.info
    if info is None:
        return
    if cfg.areas and (info.areas or info.geocodes):
        names = [a.casefold() for a in cfg.areas]
        by_code = any(_covers(ours, value) for _, value in info.geocodes for ours in cfg.areas)
        by_name = any(n in desc.casefold() for desc in info.areas for n in names if len(n) >= 2)
        if not (by_code or by_name):
            described = "；".join(info.areas) or ", ".join(v for _, v in info.geocodes)
            raise CapError(422, "not_our_area", f"the alert is for {described[:200]}, outside this gateway's "
                           f"area ({', '.join(cfg.areas)}); nothing was sent", field=f"{info.path}/area")
    if cfg.event_kinds:
        kinds = {k.casefold() for k in cfg.event_kinds}
        values = {c.casefold() for c in info.categories} | {v.casefold() for _, v in info.event_codes}
        if not (kinds & values or any(k in info.event.casefold() for k in kinds if len(k) >= 2)):
            raise CapError(422, "not_our_event", f"event {info.event!r} ({', '.join(info.categories)}) is not "
                           f"one this gateway handles ({', '.join(cfg.event_kinds)}); nothing was sent",
                           field=f"{info.path}/event")


def _latest_first(refs: tuple[Reference, ...]) -> list[Reference]:
    # CAP 1.0 references carry no time: the last one listed is taken as the latest
    return sorted(reversed(refs), key=lambda r: r.sent.timestamp() if r.sent else 0.0, reverse=True)


async def find_reference(store: Events, alert: CapAlert) -> Referenced | None:
    """The most recently sent referenced message that the gateway knows, or None when it
    received none of them (missed, or before a new data dir): the caller decides what that means."""
    for ref in _latest_first(alert.references):
        try:
            view = await store.get_event(event_id_for(ref.identifier))
        except UnknownEvent:
            continue
        return Referenced(view["id"], Level(view["level"]) if view.get("level") else None)
    return None


def unknown_reference_warning(alert: CapAlert) -> str:
    names = ", ".join(r.identifier for r in alert.references)
    if alert.msg_type == "Cancel":
        return f"Cancel of a message this gateway never received ({names}): recorded, nothing sent"
    return (f"Update of a message this gateway never received ({names}): taken as a new warning at its own "
            "level, starting a chain")


def _type_and_level(alert: CapAlert, cfg: CapCfg, ref: Referenced | None) -> tuple[EventType, Level | None]:
    if alert.msg_type == "Cancel":
        if ref is None:  # the caller records an unknown Cancel as a no-op before mapping
            raise CapError(422, "unknown_reference", unknown_reference_warning(alert), field="/alert/references")
        return EventType.WARNING_LIFTED, None
    level = derive_level(alert.info, cfg) if alert.info is not None else None
    if level is None:
        where = f"{alert.info.path}/severity" if alert.info else "/alert/info"
        raise CapError(422, "no_level", "no warning level: no colour <parameter> and no mapped <severity>",
                       field=where)
    if alert.msg_type == "Alert" or ref is None:  # an Update of an unknown message starts a chain
        return EventType.WARNING_ISSUED, level
    if ref.level is None:
        raise CapError(422, "unmappable_cap", f"the referenced event {ref.event_id} has no level to compare with",
                       field="/alert/references")
    step = LEVEL_ORDER[level] - LEVEL_ORDER[ref.level]
    kind = EventType.WARNING_UPGRADED if step > 0 else EventType.WARNING_DOWNGRADED if step < 0 else \
        EventType.WARNING_EXTENDED
    return kind, level


HEADLINE_CHARS, BODY_CHARS = 200, 20000  # the Event model's limits


def _clip(text: str | None, n: int) -> str | None:
    return text if text is None or len(text) <= n else text[: n - 1] + "…"


def _info_fields(info: CapInfo) -> dict[str, Any]:
    # an upstream alert is never refused for length: what the event model cannot hold is cut
    out: dict[str, Any] = {"headline": _clip(info.headline, HEADLINE_CHARS),
                           "body": _clip(info.description, BODY_CHARS),
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
    """The Event for a supported alert (see check_supported). An Update whose reference is None
    (unknown) becomes `warning.issued` at its own level; a Cancel needs a known `ref`.

    Raises:
        CapError: 422 `no_level`, `unmappable_cap` (a value the Event model refuses),
        `unknown_reference` (a Cancel without a known reference).
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
