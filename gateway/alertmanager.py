"""Alertmanager webhook intake (payload version 4): each alert becomes at most one event.

Ids are deterministic so Alertmanager's resends (every `repeat_interval`, and by both members
of an HA pair) are idempotent: one firing episode of an alert is `am-<fingerprint>-<startsAt>`
(compact UTC); a level change continues it as `<that>-2`, `-3`, ...; the resolution is
`<that>-resolved`, a `warning.lifted` superseding the newest. The chain is found again by
walking those ids with `Store.get_event`; a new episode of a fingerprint whose earlier
episode is still active continues that chain instead of opening a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from gateway.cap import LEVEL_ORDER, colour_level
from gateway.config import AlertRuleCfg
from gateway.events import Event, EventType, Level
from gateway.flows.errors import Conflict, DomainError, Invalid, validation_error
from gateway.flows.intake import Answer, Submit
from gateway.logs import get as get_logger
from gateway.store.base import UnknownEvent
from gateway.store.ports import Events

__all__ = ["AlertmanagerIntake", "AmAlert", "AmPayload", "parse_payload"]

log = get_logger("gateway.alertmanager")

MAX_CHAIN = 64  # level changes within one firing episode; a flapping rule beyond this is ignored
_Lenient = ConfigDict(extra="ignore", frozen=True)  # Alertmanager adds fields between releases


class AmAlert(BaseModel):
    """One alert of the payload (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

    model_config = _Lenient
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime  # Alertmanager's wire names
    endsAt: AwareDatetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(pattern=r"^[A-Za-z0-9]{1,64}$")


class AmPayload(BaseModel):
    model_config = _Lenient
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""
    alerts: list[AmAlert] = Field(max_length=1000)


@dataclass(frozen=True, slots=True)
class AlertResult:
    fingerprint: str
    status: str
    outcome: Literal["created", "replayed", "ignored", "rejected"]
    event_id: str | None = None
    type: str | None = None
    detail: str | None = None
    error: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


@dataclass(frozen=True, slots=True)
class Episode:
    head: Mapping[str, Any] | None  # the newest event of this firing episode
    length: int
    resolved: Mapping[str, Any] | None


def parse_payload(data: Any) -> AmPayload:
    """Raises Invalid: `unsupported_version` unless version 4, else the first invalid field."""
    if not isinstance(data, dict):
        raise Invalid("invalid_payload", "the payload must be a JSON object", field="$")
    if data.get("version") != "4":
        raise Invalid("unsupported_version", f"webhook payload version {data.get('version')!r} is not"
                       " supported: only version 4", field="$.version")
    try:
        return AmPayload.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def base_id(alert: AmAlert) -> str:
    return f"am-{alert.fingerprint}-{alert.startsAt.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def match_rule(rules: list[AlertRuleCfg], labels: Mapping[str, str]) -> AlertRuleCfg | None:
    for rule in rules:
        if labels.get("alertname") in rule.alertnames and all(labels.get(k) == v for k, v in rule.match.items()):
            return rule
    return None


def _label(alert: AmAlert, name: str) -> str | None:
    return alert.labels.get(name) or alert.annotations.get(name) or None


def alert_level(alert: AmAlert, rule: AlertRuleCfg, level_values: Mapping[str, str]) -> Level | None:
    """The level from the rule's label (or annotation), else its default; None for advisories.

    Raises:
        Invalid: `unknown_level` for a value that is no colour, `no_level` without a default.
    """
    if rule.kind == "advisory":
        return None
    raw = _label(alert, rule.level_label)
    if raw is None:
        if rule.default_level is None:
            raise Invalid("no_level", f"no {rule.level_label} label and no default level",
                           field=f"$.labels.{rule.level_label}")
        return Level(rule.default_level)
    level = colour_level(raw, level_values)
    if level is None:
        raise Invalid("unknown_level", f"{rule.level_label}={raw!r} names no warning level",
                       field=f"$.labels.{rule.level_label}")
    return level


async def _get(store: Events, event_id: str) -> Mapping[str, Any] | None:
    try:
        return await store.get_event(event_id)
    except UnknownEvent:
        return None


async def walk(store: Events, base: str) -> Episode:
    """The events of one firing episode, found by their deterministic ids."""
    head, length = None, 0
    for n in range(1, MAX_CHAIN + 1):
        view = await _get(store, base if n == 1 else f"{base}-{n}")
        if view is None:
            break
        head, length = view, n
    return Episode(head, length, await _get(store, f"{base}-resolved"))


async def active_for(store: Events, fingerprint: str) -> Mapping[str, Any] | None:
    """The newest active event of an earlier episode of this fingerprint, if any."""
    prefix = f"am-{fingerprint}-"
    for ev in await store.list_events(status="active", limit=500):
        if str(ev["id"]).startswith(prefix):
            return ev
    return None


def build_event(alert: AmAlert, rule: AlertRuleCfg, *, event_id: str, etype: EventType, level: Level | None,
                supersedes: str | None) -> Event:
    """Raises Invalid when the annotations make an invalid event (e.g. a headline over 200)."""
    data: dict[str, Any] = {"id": event_id, "type": etype.value, "status": rule.status,
                            "issued_by": {"org": "Prometheus Alertmanager",
                                          "doc_no": alert.labels.get("alertname", "")[:100]}}
    if level is not None:
        data["level"] = level.value
    if supersedes is not None:
        data["supersedes"] = supersedes
    if etype in (EventType.WARNING_ISSUED, EventType.ADVISORY_ISSUED):
        data["valid_from"] = alert.startsAt  # a later step starts when it is accepted
    if etype in (EventType.WARNING_LIFTED, EventType.ADVISORY_CANCELLED):
        if alert.endsAt is not None and alert.endsAt.year > 1:  # Go's zero time means "unset"
            data["valid_from"] = alert.endsAt
    else:
        # never refused for length: a headline over the model's 200 characters is cut, whole in the body
        headline = alert.annotations.get(rule.headline_annotation)
        body = alert.annotations.get(rule.body_annotation)
        if headline is not None and len(headline) > 200:
            body = headline if not body else f"{headline}。{body}"
            headline = headline[:199] + "…"
        data["headline"] = headline
        data["body"] = body[:19999] + "…" if body is not None and len(body) > 20000 else body
    if area := _label(alert, rule.area_label):
        data["area"] = area
    try:
        return Event.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        raise validation_error(exc) from exc


def _step(head: Mapping[str, Any], level: Level | None) -> EventType | None:
    """The type that moves the chain from `head` to `level`; None when nothing changes."""
    before = head.get("level")
    if level is None or before is None or before == level.value:
        return None
    return EventType.WARNING_UPGRADED if LEVEL_ORDER[level] > LEVEL_ORDER[Level(before)] else \
        EventType.WARNING_DOWNGRADED


def _result(alert: AmAlert, outcome: Literal["created", "replayed", "ignored", "rejected"],
            view: Mapping[str, Any] | None, detail: str) -> AlertResult:
    if outcome == "ignored":
        log.info("alertmanager_alert_ignored", fingerprint=alert.fingerprint, reason=detail)
    return AlertResult(alert.fingerprint, alert.status, outcome, str(view["id"]) if view else None,
                       str(view["type"]) if view else None, detail)


class AlertmanagerIntake:
    """Maps Alertmanager webhooks onto event chains (found again in the events) and submits them."""

    def __init__(self, *, store: Events, submit: Submit, rules: list[AlertRuleCfg],
                 level_values: Mapping[str, str]) -> None:
        """`rules` map alerts to events (`alertmanager.rules`); `level_values` read a level label's
        colour word (`cap.level_values`)."""
        self._store = store
        self._submit_event = submit
        self._rules = rules
        self._level_values = level_values

    async def process(self, payload: AmPayload, *, principal: str) -> Answer:
        """Map every alert in order; 202 when any event was created, else 200.

        Raises:
            Invalid: `alerts_rejected` when every alert was rejected (so Alertmanager logs it).
        """
        results = [await self._one(alert, principal) for alert in payload.alerts]
        rejected = [i for i, r in enumerate(results) if r.outcome == "rejected"]
        if results and len(rejected) == len(results):
            first = results[0].error or {}
            raise Invalid("alerts_rejected", f"every alert was rejected; the first: {first.get('message')}",
                           field=f"$.alerts[0]{str(first.get('field', '')).removeprefix('$')}")
        status = 202 if any(r.outcome == "created" for r in results) else 200
        return status, {"receiver": payload.receiver, "results": [r.to_json() for r in results]}

    async def _one(self, alert: AmAlert, principal: str) -> AlertResult:
        """The alert's result; a domain error of its mapping or submission is its `rejected` result."""
        rule = match_rule(self._rules, alert.labels)
        if rule is None:
            return _result(alert, "ignored", None, f"no rule maps alertname={alert.labels.get('alertname')!r}")
        try:
            if alert.status == "firing":
                return await self._firing(alert, rule, principal)
            return await self._resolved(alert, rule, principal)
        except DomainError as exc:
            err = {"code": exc.code, "message": exc.message, **({"field": exc.field} if exc.field else {})}
            log.warning("alertmanager_alert_rejected", fingerprint=alert.fingerprint, code=exc.code)
            return AlertResult(alert.fingerprint, alert.status, "rejected", detail=exc.message, error=err)

    async def _firing(self, alert: AmAlert, rule: AlertRuleCfg, principal: str) -> AlertResult:
        """Raises Invalid: no or an unknown level, or from the submission."""
        level = alert_level(alert, rule, self._level_values)
        base = base_id(alert)
        ep = await walk(self._store, base)
        if ep.resolved is not None:
            return _result(alert, "ignored", ep.resolved, "this firing episode was already resolved")
        head = ep.head or await active_for(self._store, alert.fingerprint)
        if head is None:
            kind = EventType.WARNING_ISSUED if rule.kind == "warning" else EventType.ADVISORY_ISSUED
            return await self._submit(alert, build_event(alert, rule, event_id=base, etype=kind, level=level,
                                                         supersedes=None), principal, rule)
        if head["state"] in ("superseded", "ended"):
            return _result(alert, "ignored", head, "the chain has moved on past this alert's event")
        step = _step(head, level)
        if step is None:
            return _result(alert, "replayed", head, "already notified at this level")
        if ep.length >= MAX_CHAIN:
            return _result(alert, "ignored", head, f"more than {MAX_CHAIN} level changes in one episode")
        event_id = f"{base}-{ep.length + 1}" if ep.head is not None else base
        event = build_event(alert, rule, event_id=event_id, etype=step, level=level, supersedes=str(head["id"]))
        return await self._submit(alert, event, principal, rule)

    async def _resolved(self, alert: AmAlert, rule: AlertRuleCfg, principal: str) -> AlertResult:
        """Raises Invalid from the submission."""
        base = base_id(alert)
        ep = await walk(self._store, base)
        if ep.resolved is not None:
            return _result(alert, "replayed", ep.resolved, "already lifted")
        head = ep.head or await active_for(self._store, alert.fingerprint)
        if head is None:
            return _result(alert, "ignored", None, "nothing to lift: no event was raised for this alert")
        if head["state"] in ("superseded", "ended"):
            return _result(alert, "ignored", head, "the chain has already moved on or ended")
        kind = EventType.WARNING_LIFTED if rule.kind == "warning" else EventType.ADVISORY_CANCELLED
        event = build_event(alert, rule, event_id=f"{base}-resolved", etype=kind, level=None,
                            supersedes=str(head["id"]))
        return await self._submit(alert, event, principal, rule)

    async def _submit(self, alert: AmAlert, event: Event, principal: str, rule: AlertRuleCfg) -> AlertResult:
        """Raises Invalid from the submission (an unknown audience, an SMS over budget)."""
        # a rule marked auto_release is the operators' standing decision: no sign-off waits for it
        released_by = f"alertmanager:{alert.labels.get('alertname', '')}" if rule.auto_release else None
        try:
            status, _ = await self._submit_event(event, source="alertmanager", principal=principal, machine=True,
                                                 released_by=released_by)
        except Conflict:
            # the same id with other annotations: the other member of an HA pair won the race
            status = 200
        return AlertResult(alert.fingerprint, alert.status, "created" if status == 202 else "replayed", event.id,
                           event.type.value)
