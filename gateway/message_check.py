"""Config-time check that every unit's SMS can fit: the fixed parts alone (signature, drill mark,
lead, the unit's action, the ack ask and link) must fit `sms.max_segments`, else the action would
have to be cut at intake (`gateway check-config` fails instead)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contacts.model import Roster
from gateway.events import Event, EventType, Level, Status
from gateway.render import Chain, Renderer

# the longest forms: two-digit month, day and hour with minutes; a drill mark
_WHEN = datetime(2026, 12, 10, 4, 30, tzinfo=UTC)  # 12月10日12时30分 in Beijing
_TYPES = (EventType.WARNING_ISSUED, EventType.WARNING_UPGRADED, EventType.WARNING_DOWNGRADED,
          EventType.WARNING_EXTENDED, EventType.WARNING_LIFTED)


def fixed_parts_problems(renderer: Renderer, roster: Roster, url_length: int) -> list[str]:
    """One line per unit whose fixed SMS parts exceed the budget for some warning type and level,
    with a link of `url_length` characters."""
    problems: dict[str, str] = {}
    link = "h" * url_length
    for etype in _TYPES:
        for level in (Level.YELLOW, Level.ORANGE, Level.RED):
            for status in (Status.ACTUAL, Status.EXERCISE):
                event = Event(type=etype, level=level, status=status, valid_from=_WHEN,
                              valid_until=_WHEN + timedelta(days=2),
                              supersedes=None if etype is EventType.WARNING_ISSUED else "earlier")
                # a signed actual warning names its approval (flows/signoff.py) where a drill has its mark
                ctx = renderer.context(event, "check", _WHEN, Chain(level=level.value, origin_at=_WHEN),
                                       approval="经县指挥部批准" if status is Status.ACTUAL else "")
                for unit in roster.units.values():
                    if unit.id in problems:
                        continue
                    fitted = renderer.fit_sms(ctx, unit_name=unit.name, ack=timedelta(minutes=30), ack_url=link,
                                              action=renderer.action(ctx, unit.actions), roles=unit.roles)
                    if "action" in fitted.cut:
                        problems[unit.id] = (
                            f"sms: unit {unit.id!r} ({unit.name}): the fixed parts of a {status.value} "
                            f"{etype.value} {level.value} SMS (lead, its action, the ack link of {url_length} "
                            f"characters) exceed sms.max_segments={renderer.max_sms_segments}; shorten its "
                            f"{ctx.values['action_key']} action or the public base URL, or raise the budget")
    return list(problems.values())
