"""The policy's rules about persons: who besides the unit's own line gets the first message, and
the office hours those rules can depend on (see gateway/defaults/policy.yaml)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contacts.people import PERSON_ROLES
from gateway.events import Event, EventType, Level, Status
from gateway.office_hours import in_office_hours

_Strict = ConfigDict(extra="forbid", frozen=True)
PERSON_CHANNELS = ("sms", "voice")


class When(BaseModel):
    """Which events a rule applies to (every listed dimension must match; empty: any)."""

    model_config = _Strict
    types: tuple[EventType, ...] = ()
    levels: tuple[Level, ...] = ()
    statuses: tuple[Status, ...] = ()

    def matches(self, event: Event) -> bool:
        if self.types and event.type not in self.types:
            return False
        if self.levels and (event.level is None or event.level not in self.levels):
            return False
        return not (self.statuses and event.status not in self.statuses)


def _roles(v: tuple[str, ...]) -> tuple[str, ...]:
    for r in v:
        if r not in PERSON_ROLES:
            raise ValueError(f"unknown person role {r!r}; known: {', '.join(PERSON_ROLES)}")
    return v


def _channels(v: tuple[str, ...]) -> tuple[str, ...]:
    for c in v:
        if c not in PERSON_CHANNELS:
            raise ValueError(f"persons are reached by {' or '.join(PERSON_CHANNELS)}, not {c!r}")
    return v


class OfficeHoursSpec(BaseModel):
    """Office hours, Beijing time; with `calendar`, weekends and public holidays are off."""

    model_config = _Strict
    start: time = time(8, 0)
    end: time = time(18, 0)
    calendar: bool = True

    def contains(self, at: datetime) -> bool:
        return in_office_hours(at, self.start, self.end, calendar=self.calendar)


class PersonRuleSpec(BaseModel):
    """Persons of every unit an event reaches who get its first message too. `roles` are tried
    in order and the first that finds somebody wins (`[duty, liaison]`: the person on duty, else
    the liaison); `hours` limits the rule to office hours or to the rest of the time."""

    model_config = _Strict
    name: str
    when: When = When()
    hours: Literal["any", "office", "off"] = "any"
    roles: tuple[str, ...] = Field(min_length=1)
    channels: tuple[str, ...] = Field(min_length=1)

    _check_roles = field_validator("roles")(classmethod(lambda cls, v: _roles(v)))
    _check_channels = field_validator("channels")(classmethod(lambda cls, v: _channels(v)))

    def applies(self, event: Event, at: datetime, office: OfficeHoursSpec) -> bool:
        if not self.when.matches(event):
            return False
        return self.hours == "any" or (self.hours == "office") == office.contains(at)


class PersonStep(BaseModel):
    """The person part of an escalation step (`action: notify_persons`), read from the frozen
    step: roles tried in order, channels for a mobile (a landline gets voice only)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    roles: tuple[str, ...] = ("duty", "liaison")
    channels: tuple[str, ...] = ("voice", "sms")

    _check_roles = field_validator("roles")(classmethod(lambda cls, v: _roles(v)))
    _check_channels = field_validator("channels")(classmethod(lambda cls, v: _channels(v)))
