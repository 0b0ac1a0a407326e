"""People on units: contact persons (liaison, leader in charge, duty staff) and duty schedules.

The plan's directory gives each unit one number, mostly an office landline that nobody answers at
night. Real offices keep, per unit, a liaison (联络员), a leader in charge (分管领导) and a duty
schedule (值班表); this module is their pure model. "Who is on duty" is a function of time,
resolved when a message is sent, never frozen when the roster is loaded.

Times are Beijing time (UTC+8, no daylight saving). A schedule entry is either a whole day
(`date`) or a `from`–`to` range; ranges are half-open, so 08:00–18:00 and 18:00–08:00 touch but
do not overlap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from contacts.model import Contact
from contacts.numbers import mask, parse_number

__all__ = [
    "BEIJING",
    "PERSON_ROLES",
    "ROLE_LABELS",
    "DutyEntry",
    "Person",
    "duty_person",
    "format_local",
    "overlapping",
    "parse_duty",
    "parse_local",
    "parse_person",
    "parse_role",
    "people_from_yaml",
    "persons_for",
]

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
PERSON_ROLES = ("liaison", "leader", "duty")
# The office's sheet says these in Chinese; both spellings are accepted, Chinese is written back.
ROLE_LABELS = {"liaison": "联络员", "leader": "分管领导", "duty": "值班人员"}
_ROLE_ALIASES = {**{r: r for r in PERSON_ROLES}, **{v: k for k, v in ROLE_LABELS.items()},
                 "值班员": "duty", "值班": "duty", "领导": "leader"}
_PERSON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LOCAL_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True, slots=True)
class Person:
    """A contact person of a unit. `id` is unique within the whole roster."""

    id: str
    unit_id: str
    name: str
    role: str  # liaison | leader | duty
    mobile: Contact | None = None
    landline: Contact | None = None
    note: str = ""

    @property
    def contacts(self) -> tuple[Contact, ...]:
        """Mobile first: it can take SMS and voice, a landline only voice."""
        return tuple(c for c in (self.mobile, self.landline) if c is not None)

    def to_json(self, *, masked: bool = True) -> dict[str, Any]:
        """Plain JSON; numbers are masked unless `masked` is False (exports for the office)."""
        def show(c: Contact | None) -> str | None:
            if c is None:
                return None
            return mask(c.address) if masked else c.raw or c.address

        return {"id": self.id, "name": self.name, "role": self.role, "role_label": ROLE_LABELS[self.role],
                "mobile": show(self.mobile), "landline": show(self.landline), "note": self.note}


@dataclass(frozen=True, slots=True)
class DutyEntry:
    """One line of a unit's duty schedule: `person_id` is on duty from `start` (inclusive) to
    `end` (exclusive). `day` is set when the office gave a whole date rather than a range, so the
    entry is written back the way it was entered."""

    unit_id: str
    person_id: str
    start: datetime
    end: datetime
    day: date | None = None

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def overlaps(self, other: DutyEntry) -> bool:
        return self.start < other.end and other.start < self.end

    def to_json(self) -> dict[str, str]:
        if self.day is not None:
            return {"person": self.person_id, "date": self.day.isoformat()}
        return {"person": self.person_id, "from": format_local(self.start), "to": format_local(self.end)}

    def describe(self) -> str:
        if self.day is not None:
            return self.day.isoformat()
        return f"{format_local(self.start)}–{format_local(self.end)}"


def format_local(at: datetime) -> str:
    """Beijing wall-clock time as the sheet shows it: "2026-12-03 18:00"."""
    return at.astimezone(BEIJING).strftime(_LOCAL_FORMAT)


def parse_local(value: object) -> datetime:
    """A Beijing time from a sheet cell or YAML value: a datetime (naive = Beijing), or text
    "YYYY-MM-DD HH:MM" (also with a T, seconds, or an explicit offset).

    Raises:
        ValueError: anything else, with what was expected.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=BEIJING) if value.tzinfo is None else value.astimezone(BEIJING)
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None:
            return parse_local(parsed)
    raise ValueError(f"{value!r} is not a time (expected YYYY-MM-DD HH:MM, Beijing time)")


def _parse_date(value: object) -> date:
    if isinstance(value, datetime):
        if value.time() != time(0):
            raise ValueError(f"{value!r} has a time of day: use from/to for a range")
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date (expected YYYY-MM-DD)")


def parse_role(value: object) -> str:
    """`liaison`, `leader`, `duty` or their Chinese names (联络员, 分管领导, 值班人员).

    Raises:
        ValueError: any other value.
    """
    role = _ROLE_ALIASES.get(str(value).strip()) if value is not None else None
    if role is None:
        allowed = ", ".join(f"{r} ({ROLE_LABELS[r]})" for r in PERSON_ROLES)
        raise ValueError(f"unknown role {value!r} (allowed: {allowed})")
    return role


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a spreadsheet holds a typed number as a float
    return str(value).strip()


def _number(value: object, field: str, want: str | None, problems: dict[str, str]) -> Contact | None:
    text = _cell_text(value)
    if not text:
        return None
    try:
        contact = parse_number(text)
    except ValueError as exc:
        problems[field] = str(exc)
        return None
    if want is not None and contact.kind != want:
        problems[field] = f"{text!r} is not a {'mobile' if want == 'mobile' else 'landline'} number"
        return None
    return contact


def parse_person(unit_id: str, fields: Mapping[str, object]) -> tuple[Person | None, dict[str, str]]:
    """A person from one sheet row or YAML entry (keys id, name, role, mobile, landline, note).

    Returns the person (None when a required field is bad) and the problems by field name, so the
    caller can say which column of which row is wrong. A person needs a mobile or a landline.
    """
    problems: dict[str, str] = {}
    person_id, name = _cell_text(fields.get("id")), _cell_text(fields.get("name"))
    if not person_id:
        problems["id"] = "missing"
    elif not _PERSON_ID.match(person_id):
        problems["id"] = f"{person_id!r} must be letters, digits, '_', '.' or '-' (at most 64)"
    if not name:
        problems["name"] = "missing"
    role = ""
    try:
        role = parse_role(fields.get("role"))
    except ValueError as exc:
        problems["role"] = str(exc)
    mobile = _number(fields.get("mobile"), "mobile", "mobile", problems)
    landline = _number(fields.get("landline"), "landline", None, problems)
    if not problems and mobile is None and landline is None:
        problems["mobile"] = "a person needs a mobile or a landline"
    if problems:
        return None, problems
    return Person(person_id, unit_id, name, role, mobile, landline, _cell_text(fields.get("note"))), problems


def parse_duty(unit_id: str, fields: Mapping[str, object], persons: Mapping[str, Person]
               ) -> tuple[DutyEntry | None, dict[str, str]]:
    """A schedule entry from one sheet row or YAML entry: `person` (an id or the name of one of
    the unit's persons) and either `date` or `from` + `to`. `persons` are the unit's, by id.

    Returns the entry (None when invalid) and the problems by field name.
    """
    problems: dict[str, str] = {}
    ref = _cell_text(fields.get("person"))
    person = persons.get(ref) or next((p for p in persons.values() if p.name == ref), None)
    if not ref:
        problems["person"] = "missing"
    elif person is None:
        problems["person"] = f"{ref!r} is not a person of unit {unit_id!r}"
    day_raw, start_raw, end_raw = fields.get("date"), fields.get("from"), fields.get("to")
    has_day = _cell_text(day_raw) != ""
    has_range = _cell_text(start_raw) != "" or _cell_text(end_raw) != ""
    start = end = None
    day: date | None = None
    if has_day == has_range:
        problems["date"] = "give either a date or a from–to range"
    elif has_day:
        try:
            day = _parse_date(day_raw)
            start = datetime.combine(day, time(0), BEIJING)
            end = start + timedelta(days=1)
        except ValueError as exc:
            problems["date"] = str(exc)
    else:
        for key, raw in (("from", start_raw), ("to", end_raw)):
            try:
                value = parse_local(raw)
            except ValueError as exc:
                problems[key] = str(exc)
                continue
            start, end = (value, end) if key == "from" else (start, value)
        if start is not None and end is not None and end <= start:
            problems["to"] = f"ends ({format_local(end)}) before it starts ({format_local(start)})"
    if problems or person is None or start is None or end is None:
        return None, problems
    return DutyEntry(unit_id, person.id, start, end, day), problems


def overlapping(entries: Sequence[DutyEntry]) -> list[tuple[int, int]]:
    """Index pairs (i < j) of entries of the same unit whose times overlap."""
    pairs: list[tuple[int, int]] = []
    for j, later in enumerate(entries):
        pairs.extend((i, j) for i, earlier in enumerate(entries[:j])
                     if earlier.unit_id == later.unit_id and earlier.overlaps(later))
    return pairs


def duty_person(persons: Iterable[Person], duty: Iterable[DutyEntry], at: datetime) -> Person | None:
    """The person the schedule has on duty at `at`, or None when nobody is scheduled then."""
    by_id = {p.id: p for p in persons}
    for entry in duty:
        if entry.covers(at) and entry.person_id in by_id:
            return by_id[entry.person_id]
    return None


def persons_for(persons: Sequence[Person], duty: Iterable[DutyEntry], roles: Sequence[str], at: datetime,
                *, first_only: bool = True) -> list[Person]:
    """The persons a selector names, tried in order: `duty` is whoever the schedule has on duty
    at `at` (else any person whose role is duty), `liaison` / `leader` the persons with that role.

    With `first_only` (the escalation's "the duty person, else the liaison") the first role that
    finds somebody wins; otherwise every role contributes. Never the same person twice.
    """
    found: list[Person] = []
    for role in roles:
        if role == "duty":
            on_duty = duty_person(persons, duty, at)
            picked = [on_duty] if on_duty is not None else [p for p in persons if p.role == "duty"][:1]
        else:
            picked = [p for p in persons if p.role == role]
        picked = [p for p in picked if p not in found]
        found.extend(picked)
        if first_only and found:
            break
    return found


_PERSON_KEYS = frozenset({"id", "name", "role", "mobile", "landline", "note"})
_DUTY_KEYS = frozenset({"person", "date", "from", "to"})


def _entries(raw: object, where: str, allowed: frozenset[str], errors: list[str]) -> list[dict[str, object]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append(f"{where}: expected a list")
        return []
    out = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            errors.append(f"{where}[{index}]: expected a mapping")
            continue
        unknown = sorted(str(k) for k in item if k not in allowed)
        if unknown:
            errors.append(f"{where}[{index}]: unknown field(s) {', '.join(map(repr, unknown))}"
                          f" (allowed: {', '.join(sorted(allowed))})")
        out.append({str(k): v for k, v in item.items()})
    return out


def people_from_yaml(unit_id: str, raw_persons: object, raw_duty: object, where: str
                     ) -> tuple[tuple[Person, ...], tuple[DutyEntry, ...], list[str]]:
    """A unit's `persons` and `duty` lists from roster YAML, with every problem found.

    Numbers must be quoted strings, as everywhere in the roster: YAML reads some unquoted digit
    strings as octal integers.
    """
    errors: list[str] = []
    persons: dict[str, Person] = {}
    for index, entry in enumerate(_entries(raw_persons, f"{where} persons", _PERSON_KEYS, errors)):
        for key in ("mobile", "landline"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                errors.append(f"{where} persons[{index}]: field {key!r} must be a quoted string")
                entry[key] = None
        person, problems = parse_person(unit_id, entry)
        errors.extend(f"{where} persons[{index}] {key}: {msg}" for key, msg in problems.items())
        if person is not None and person.id in persons:
            errors.append(f"{where} persons[{index}] id: {person.id!r} listed more than once")
        elif person is not None:
            persons[person.id] = person
    duty: list[DutyEntry] = []
    for index, entry in enumerate(_entries(raw_duty, f"{where} duty", _DUTY_KEYS, errors)):
        item, problems = parse_duty(unit_id, entry, persons)
        errors.extend(f"{where} duty[{index}] {key}: {msg}" for key, msg in problems.items())
        if item is not None:
            duty.append(item)
    for i, j in overlapping(duty):
        errors.append(f"{where} duty[{j}]: {duty[j].describe()} overlaps duty[{i}] ({duty[i].describe()})")
    return tuple(persons.values()), tuple(duty), errors
