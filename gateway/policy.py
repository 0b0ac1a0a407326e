"""Routing policy: which units hear about an event, on which channels, with which ack rule.

The policy is YAML, validated with pydantic when loaded; a bad file raises `PolicyError` and
never replaces a good one. Evaluation is pure: event in, per-audience plans out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contacts.resolver import Audience
from gateway.durations import parse_duration
from gateway.events import Event, EventType, Level, Status
from gateway.policy_people import OfficeHoursSpec, PersonRuleSpec, PersonStep, When
from gateway.report_policy import ReportsSpec

KNOWN_CHANNELS = ("sms", "voice", "webhook")
ESCALATION_ACTIONS = ("repeat_voice", "notify_persons", "notify_hq_office")


class PolicyError(ValueError):
    """The policy file is unreadable or invalid; `messages` lists every problem."""

    def __init__(self, messages: Sequence[str]):
        self.messages = list(messages)
        super().__init__("; ".join(self.messages))


_Strict = ConfigDict(extra="forbid", frozen=True)


class AudienceSpec(BaseModel):
    model_config = _Strict
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    units: tuple[str, ...] = ()

    def to_audience(self) -> Audience:
        return Audience(roles=self.roles, groups=self.groups, units=self.units)


class EscalationStepSpec(BaseModel):
    model_config = _Strict
    action: str  # "repeat_voice" | "notify_persons" | "notify_hq_office"
    after: str = "0m"
    # notify_persons: the unit's persons to reach, tried in order, and the channels for a mobile
    roles: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None

    @field_validator("action")
    @classmethod
    def _action(cls, v: str) -> str:
        if v not in ESCALATION_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ESCALATION_ACTIONS)}")
        return v

    @model_validator(mode="after")
    def _persons(self) -> EscalationStepSpec:
        if self.action != "notify_persons" and (self.roles is not None or self.channels is not None):
            raise ValueError("roles and channels belong to notify_persons steps")
        if self.action == "notify_persons":
            PersonStep(**self.model_dump(exclude_none=True))  # validates roles and channels
        return self


class ReminderSpec(BaseModel):
    """A periodic message while a chain is active: a report request every day at a Beijing time
    (`daily_at: "12:00"`), or every N (`every: 4h`); `action: rebroadcast_public` re-sends the
    chain's approved public messages instead. All stop when the chain is lifted."""

    model_config = _Strict
    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    when: When = When()
    action: str = "report_request"
    every: str | None = None
    daily_at: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    headline: str = "请于今日14时前报送重污染天气应急措施落实情况"

    @field_validator("action")
    @classmethod
    def _action(cls, v: str) -> str:
        if v not in ("report_request", "rebroadcast_public"):
            raise ValueError("action must be report_request or rebroadcast_public")
        return v

    @model_validator(mode="after")
    def _schedule(self) -> ReminderSpec:
        if (self.every is None) == (self.daily_at is None):
            raise ValueError("give exactly one of every / daily_at")
        if self.every is not None and parse_duration(self.every).total_seconds() < 5:
            raise ValueError("every must be at least 5s")
        return self


class SignoffSpec(BaseModel):
    """Which actual warning events wait for an HQ leader's sign-off (签发) before any unit is
    told, and who may sign them. `signers` by level, in the order they are asked: the first
    ones at once, the next one (and the HQ office) after `wait` if nobody has signed. A draft
    unsigned after `expires` ends as `expired`. Machine intake from `cap.trusted_senders` or an
    Alertmanager rule with `auto_release: true` is released on the source's word."""

    model_config = _Strict
    levels: tuple[Level, ...] = ()
    types: tuple[EventType, ...] = (EventType.WARNING_ISSUED, EventType.WARNING_UPGRADED,
                                    EventType.WARNING_DOWNGRADED, EventType.WARNING_EXTENDED,
                                    EventType.WARNING_LIFTED)
    signers: dict[Level, tuple[str, ...]] = Field(default_factory=dict)
    wait: dict[Level, str] = Field(default_factory=lambda: {Level.RED: "15m"})
    default_wait: str = "30m"
    expires: str = "6h"
    # the status report after the first ack window goes to the upward units too, not only the HQ office
    status_report_upward: bool = False
    # principal -> where the sign request goes: roster person ids (their mobile), E.164 numbers
    # or webhook URLs; without an entry, the roster person whose id is the principal's name
    contacts: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("default_wait", "expires")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("wait")
    @classmethod
    def _waits(cls, v: dict[Level, str]) -> dict[Level, str]:
        for d in v.values():
            parse_duration(d)
        return v

    def wait_for(self, level: str | None) -> timedelta:
        """How long the signers asked so far have before the next one is told."""
        for lv, d in self.wait.items():
            if lv.value == level:
                return parse_duration(d)
        return parse_duration(self.default_wait)

    def signers_for(self, level: str | None) -> tuple[str, ...]:
        """Who may sign a warning of `level` (empty: any principal with events:sign)."""
        for lv, names in self.signers.items():
            if lv.value == level:
                return names
        return ()


class Rule(BaseModel):
    model_config = _Strict
    name: str
    when: When = When()
    audience: AudienceSpec
    channels: tuple[str, ...] = Field(min_length=1)
    ack: str | None = None  # a duration: the unit must confirm within it

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            if c not in KNOWN_CHANNELS:
                raise ValueError(f"unknown channel {c!r}; known: {', '.join(KNOWN_CHANNELS)}")
        return v

    @field_validator("ack")
    @classmethod
    def _ack(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class PolicyModel(BaseModel):
    model_config = _Strict
    version: int = 1
    drill_audience: AudienceSpec
    override_channels: tuple[str, ...] = ("sms", "voice", "webhook")
    max_attempts: dict[str, int] = Field(default_factory=lambda: {"webhook": 8, "sms": 5, "voice": 3})
    horizon: str = "6h"
    priority: dict[str, int] = Field(default_factory=lambda: {"red": 0, "orange": 1, "yellow": 2, "blue": 3})
    escalation: tuple[EscalationStepSpec, ...] = ()
    # who may approve a public message, by warning level (empty: any principal with public:approve)
    public_approvers: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    public_targets: AudienceSpec = AudienceSpec(roles=("carrier", "media"))
    public_draft_validity: str = "2h"  # an unapproved draft expires after this
    reminders: tuple[ReminderSpec, ...] = ()
    reports: ReportsSpec = ReportsSpec()  # daily reports and the summary evaluation (report_policy.py)
    signoff: SignoffSpec = SignoffSpec()
    # persons who get the first message besides the unit's own line, and the office hours they use
    persons: tuple[PersonRuleSpec, ...] = ()
    office_hours: OfficeHoursSpec = OfficeHoursSpec()
    # an event's measures[] by category to the units that own them (their messages carry them);
    # a category not listed goes to the HQ office
    measure_owners: dict[str, AudienceSpec] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Plan:
    """One rule's contribution: an audience, its channels and the ack window (None: no ack)."""

    rule: str
    audience: Audience
    channels: tuple[str, ...]
    ack_within: timedelta | None


class Policy:
    """A loaded, validated policy."""

    def __init__(self, model: PolicyModel, version: str, source: str):
        self.model = model
        self.version = version
        self.source = source
        self.horizon = parse_duration(model.horizon)

    def plans(self, event: Event) -> list[Plan]:
        """The plans of every rule matching the event; with an audience override, one plan."""
        matched = [r for r in self.model.rules if r.when.matches(event)]
        if event.audience is not None:
            ack = min((parse_duration(r.ack) for r in matched if r.ack), default=None)
            chans = tuple(dict.fromkeys(c for r in matched for c in r.channels)) or self.model.override_channels
            a = event.audience
            return [Plan("audience_override", Audience(a.roles, a.groups, a.units), chans, ack)]
        return [
            Plan(r.name, r.audience.to_audience(), r.channels, parse_duration(r.ack) if r.ack else None)
            for r in matched
        ]

    def person_rules(self, event: Event, at: datetime) -> list[PersonRuleSpec]:
        """The person rules that apply to the event at `at` (office hours or not)."""
        return [r for r in self.model.persons if r.applies(event, at, self.model.office_hours)]

    def drill_audience(self) -> Audience:
        return self.model.drill_audience.to_audience()

    def max_attempts(self, channel: str) -> int:
        return self.model.max_attempts.get(channel, 5)

    def priority(self, event: Event) -> int:
        """Lower runs first: red before orange before yellow; drills and tests last."""
        base = self.model.priority.get(event.level.value if event.level else "", 2)
        return base + (10 if event.status is not Status.ACTUAL else 0)

    def channels_used(self) -> set[str]:
        return {c for r in self.model.rules for c in r.channels} | set(self.model.override_channels)

    def measures_for(self, event: Event, unit_id: str, roles: Sequence[str], groups: Sequence[str]) -> list[str]:
        """The texts of the event's measures this unit owns (by `measure_owners`; a category no
        entry names goes to the HQ office), in the event's order."""
        out = []
        for m in event.measures:
            who = self.model.measure_owners.get(m.category)
            if who is None:
                mine = "hq_office" in roles
            else:
                mine = unit_id in who.units or bool(set(roles) & set(who.roles)) or bool(set(groups) & set(who.groups))
            if mine:
                out.append(m.text)
        return out

    def audiences(self) -> list[tuple[str, Audience]]:
        out = [(r.name, r.audience.to_audience()) for r in self.model.rules]
        out += [(f"measure_owners {c}", a.to_audience()) for c, a in self.model.measure_owners.items()]
        forms = [(f"report form {f.name}", Audience(f.roles, (), f.units)) for f in self.model.reports.forms]
        return [*out, ("drill_audience", self.drill_audience()), *forms]


def load_policy_text(text: str, source: str = "<string>") -> Policy:
    """Parse and validate a policy document.

    Raises:
        PolicyError: YAML syntax errors or invalid content, every problem listed.
    """
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([f"{source}: YAML syntax error: {exc}"]) from exc
    if not isinstance(data, dict):
        raise PolicyError([f"{source}: the policy must be a mapping"])
    try:
        model = PolicyModel.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(
            [f"{source}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        ) from exc
    version = hashlib.sha256(text.encode()).hexdigest()
    return Policy(model, version, source)


def load_policy(path: str | Path | None = None) -> Policy:
    """Load a policy file, or the packaged Zezhou default when `path` is None.

    Raises:
        PolicyError: the file is missing or invalid.
    """
    if path is None:
        path = Path(__file__).parent / "defaults" / "policy.yaml"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return load_policy_text(text, str(path))
