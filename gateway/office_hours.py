"""Office hours in Beijing time: working days from the official calendar (chinese-calendar knows
the State Council's holidays and the weekend days swapped to work), hours from the policy.

Outside office hours the unit's landline rings in an empty office, so the policy can send the
first message straight to the person on duty instead of waiting for the landline's deadline.
"""

from __future__ import annotations

from datetime import date, datetime, time

import chinese_calendar

from contacts.people import BEIJING
from gateway.logs import get as get_logger

log = get_logger("gateway.office_hours")
_warned: set[int] = set()


def is_workday(day: date) -> bool:
    """A working day by the official calendar (holidays off, swapped weekend days on). For a
    year the installed calendar does not cover yet, Monday to Friday, logged once per year."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        if day.year not in _warned:
            _warned.add(day.year)
            log.warning("holiday_calendar_missing", year=day.year,
                        note="chinese-calendar has no holidays for this year: Monday to Friday are workdays")
        return day.weekday() < 5


def in_office_hours(at: datetime, start: time, end: time, *, calendar: bool = True) -> bool:
    """True when `at` falls in office hours: a working day (every day without `calendar`) between
    `start` and `end` Beijing time. An `end` before `start` spans midnight (a night office)."""
    local = at.astimezone(BEIJING)
    clock = local.time().replace(tzinfo=None)
    if start <= end:
        inside, day = start <= clock < end, local.date()
    else:
        inside = clock >= start or clock < end
        day = local.date() if clock >= start else date.fromordinal(local.date().toordinal() - 1)
    return inside and (not calendar or is_workday(day))
