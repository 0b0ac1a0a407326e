"""A roster back to YAML: the canonical text the store keeps once the office has changed it.

`load_roster_text(dump_roster(r))` gives a roster equal to `r` (same units, groups, persons and
schedules), and dumping that again gives the same text, so a round trip changes nothing and the
version (the text's hash) is stable.
"""

from __future__ import annotations

from typing import Any

import yaml

from contacts.model import Contact, Roster, Unit
from contacts.people import Person

__all__ = ["dump_roster", "with_people"]


def _contact(c: Contact) -> dict[str, str]:
    out: dict[str, str] = {"url": c.address} if c.kind == "url" else {"number": c.raw or c.address}
    if c.label:
        out["label"] = c.label
    if c.kind == "url" and c.format and c.format != "json":
        out["format"] = c.format
    return out


def _person(p: Person) -> dict[str, str]:
    out = {"id": p.id, "name": p.name, "role": p.role}
    if p.mobile is not None:
        out["mobile"] = p.mobile.raw or p.mobile.address
    if p.landline is not None:
        out["landline"] = p.landline.raw or p.landline.address
    if p.note:
        out["note"] = p.note
    return out


def _unit(u: Unit) -> dict[str, Any]:
    out: dict[str, Any] = {"id": u.id, "name": u.name, "aliases": list(u.aliases), "roles": list(u.roles),
                           "duties": u.duties, "contacts": [_contact(c) for c in u.contacts]}
    if u.actions.to_json():
        out["actions"] = u.actions.to_json()
    if u.persons:
        out["persons"] = [_person(p) for p in u.persons]
    if u.duty:
        out["duty"] = [d.to_json() for d in u.duty]
    return out


def dump_roster(roster: Roster) -> str:
    """The roster as YAML that `contacts.loader.load_roster_text` reads back unchanged."""
    data = {
        "roles": dict(roster.role_names),
        "groups": [{"id": g.id, "name": g.name, "lead": g.lead, "members": list(g.members), "duties": g.duties}
                   for g in roster.groups.values()],
        "units": [_unit(u) for u in roster.units.values()],
    }
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000)


def with_people(roster: Roster, people: dict[str, tuple[tuple[Person, ...], tuple[Any, ...]]]) -> Roster:
    """A copy of `roster` whose units have the given (persons, duty) instead of their own; units
    not named lose theirs (an import replaces the whole directory of people)."""
    from dataclasses import replace

    units = {uid: replace(u, persons=people.get(uid, ((), ()))[0], duty=people.get(uid, ((), ()))[1])
             for uid, u in roster.units.items()}
    return Roster(units=units, groups=roster.groups, version=roster.version, warnings=roster.warnings,
                  source=roster.source, role_names=roster.role_names)
