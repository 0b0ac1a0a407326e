"""The event model: what `POST /v1/events` accepts, validated with pydantic."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["Event", "EventType", "Level", "Status", "ValidationError", "body_hash", "new_event_id"]


class EventType(StrEnum):
    WARNING_ISSUED = "warning.issued"
    WARNING_UPGRADED = "warning.upgraded"
    WARNING_DOWNGRADED = "warning.downgraded"
    WARNING_EXTENDED = "warning.extended"
    WARNING_LIFTED = "warning.lifted"
    ADVISORY_ISSUED = "advisory.issued"
    ADVISORY_CANCELLED = "advisory.cancelled"
    REPORT_REQUESTED = "report.requested"
    NOTICE = "notice"


class Level(StrEnum):
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"
    BLUE = "blue"  # legacy: Shanxi dropped blue in 2020, Jincheng still used it in 2018


class Status(StrEnum):
    ACTUAL = "actual"
    EXERCISE = "exercise"
    TEST = "test"


# Types that continue a chain and therefore must name the event they supersede.
CHAIN_TYPES = frozenset(
    {
        EventType.WARNING_UPGRADED,
        EventType.WARNING_DOWNGRADED,
        EventType.WARNING_EXTENDED,
        EventType.WARNING_LIFTED,
        EventType.ADVISORY_CANCELLED,
    }
)
# Chain-ending types: deliveries and escalations of the chain stop here.
ENDING_TYPES = frozenset({EventType.WARNING_LIFTED, EventType.ADVISORY_CANCELLED})

_Strict = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

# RFC 3339 date-time with a mandatory offset. pydantic's lax mode would also read a number (or a
# string of digits) as seconds since 1970, and a bare date as midnight: a typo must not become a
# valid timestamp, so only this shape gets through to pydantic's parser.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_TIMESTAMP_HINT = "must be an RFC 3339 timestamp string with a time zone offset, e.g. 2026-01-10T12:00:00+08:00"


def _rfc3339(value: object) -> object:
    """Let datetimes (from the CAP reader) and RFC 3339 strings through; raises ValueError otherwise."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value.strip()):
        raise ValueError(_TIMESTAMP_HINT)
    return value


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]


class Measure(BaseModel):
    model_config = _Strict
    category: str = Field(min_length=1, max_length=32)
    text: str = Field(min_length=1, max_length=500)


class AudienceIn(BaseModel):
    model_config = _Strict
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    units: tuple[str, ...] = ()


class IssuedBy(BaseModel):
    model_config = _Strict
    org: str = Field(default="", max_length=100)
    doc_no: str = Field(default="", max_length=100)


class Event(BaseModel):
    """One incoming event. Raises pydantic `ValidationError` on invalid content."""

    model_config = _Strict

    id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    type: EventType
    level: Level | None = None
    status: Status = Status.ACTUAL
    supersedes: str | None = Field(default=None, min_length=1, max_length=128)
    area: str = Field(default="泽州县", max_length=100)
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None
    headline: str | None = Field(default=None, max_length=200)
    # whole on the notice page and in webhooks; each SMS carries what fits (see render.py)
    body: str | None = Field(default=None, max_length=20000)
    measures: tuple[Measure, ...] = Field(default=(), max_length=50)
    audience: AudienceIn | None = None
    issued_by: IssuedBy | None = None
    # true: refuse (422 message_too_long) instead of cutting the free text to fit the SMS budget
    strict_length: bool | None = None

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError(_TIMESTAMP_HINT)
        return v

    @model_validator(mode="after")
    def _rules(self) -> Event:
        warning = self.type.value.startswith("warning.")
        if warning and self.type is not EventType.WARNING_LIFTED and self.level is None:
            raise ValueError(f"level is required for {self.type.value}")
        if self.type in CHAIN_TYPES and self.supersedes is None:
            raise ValueError(f"supersedes is required for {self.type.value}")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.supersedes is not None and self.supersedes == self.id:
            raise ValueError("an event cannot supersede itself")
        return self

    @property
    def exercise(self) -> bool:
        return self.status is not Status.ACTUAL

    def canonical(self) -> dict[str, Any]:
        """The event as plain JSON data (ids excluded), used for hashing and storage."""
        return self.model_dump(mode="json", exclude_none=True)


def body_hash(data: dict[str, Any]) -> str:
    """A stable digest of the submitted content, for idempotency checks."""
    blob = json.dumps({k: v for k, v in data.items() if k != "id"}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def new_event_id() -> str:
    return "ev_" + uuid.uuid4().hex
