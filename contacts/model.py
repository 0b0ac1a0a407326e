"""Roster value types: units, their contacts and the HQ's working groups.

Everything here is immutable so a resolved roster can be shared by concurrent dispatch tasks and
recorded (by `Roster.version`) with every event for audit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contacts.people import DutyEntry, Person

__all__ = ["ACTION_KEYS", "Actions", "Contact", "Group", "Roster", "RosterError", "Unit", "lookup_key"]

# The keys of a unit's action lines: the three warning levels, then what to do when a warning is lifted.
ACTION_KEYS = ("yellow", "orange", "red", "lift")

_WHITESPACE = re.compile(r"\s+")


def lookup_key(text: str) -> str:
    """Normalise a unit name for lookup.

    Whitespace is dropped because the plan's PDF wraps long names mid-word
    (e.g. "晋城市生态环境局 值班室"); such a spelling must still find the unit.
    """
    return _WHITESPACE.sub("", text)


class RosterError(ValueError):
    """A roster failed validation; `messages` lists every problem found, not just the first."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages: list[str] = list(messages)
        super().__init__("\n".join(self.messages))

    def __str__(self) -> str:
        return "\n".join(self.messages)


@dataclass(frozen=True, slots=True)
class Contact:
    """One way to reach a unit."""

    kind: str  # "mobile" | "fixed" | "url"
    address: str  # E.164 for phones or the URL
    raw: str = ""  # as written in the source (e.g. "2026736"), kept for audit against the plan
    label: str = ""
    format: str = ""  # url contacts: "json" (default) or "cap" (CAP 1.2 XML for public platforms)

    def to_json(self) -> dict[str, str]:
        """Plain-JSON form (kind, address, raw, label, and format for url contacts)."""
        out = {"kind": self.kind, "address": self.address, "raw": self.raw, "label": self.label}
        if self.kind == "url":
            out["format"] = self.format or "json"
        return out


@dataclass(frozen=True, slots=True)
class Actions:
    """What a unit must do, in one short line per warning level and on lift (drafted from the plan)."""

    yellow: str = ""
    orange: str = ""
    red: str = ""
    lift: str = ""

    def at(self, key: str | None) -> str:
        """The line for a level ("yellow", "orange", "red"; the legacy "blue" reads as yellow) or
        "lift"; empty when the unit has none for it."""
        key = "yellow" if key == "blue" else key
        return str(getattr(self, key, "")) if key in ACTION_KEYS else ""

    def missing(self) -> list[str]:
        """The keys without a line."""
        return [k for k in ACTION_KEYS if not self.at(k)]

    def to_json(self) -> dict[str, str]:
        """Plain-JSON form: key -> line, only the keys with a line."""
        return {k: self.at(k) for k in ACTION_KEYS if self.at(k)}


@dataclass(frozen=True, slots=True)
class Unit:
    """A government unit (not a person): the recipient of notifications."""

    id: str
    name: str
    aliases: tuple[str, ...]
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    duties: str
    contacts: tuple[Contact, ...]
    actions: Actions = field(default_factory=Actions)
    # contact persons (liaison, leader, duty staff) and the duty schedule, kept by the office
    persons: tuple[Person, ...] = ()
    duty: tuple[DutyEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form used by the API, the console and `Roster.to_json`; persons' numbers
        are masked (the office's export has them in full)."""
        return {
            "id": self.id,
            "name": self.name,
            "aliases": list(self.aliases),
            "roles": list(self.roles),
            "groups": list(self.groups),
            "duties": self.duties,
            "contacts": [c.to_json() for c in self.contacts],
            "actions": self.actions.to_json(),
            "persons": [p.to_json() for p in self.persons],
            "duty": [d.to_json() for d in self.duty],
        }


@dataclass(frozen=True, slots=True)
class Group:
    """A working group of the HQ (工作组): one lead unit plus member units."""

    id: str
    name: str
    lead: str
    members: tuple[str, ...]
    duties: str

    @property
    def unit_ids(self) -> tuple[str, ...]:
        """Lead first, then members, without repeats."""
        return tuple(dict.fromkeys((self.lead, *self.members)))


def _build_index(units: Mapping[str, Unit]) -> dict[str, str]:
    # First writer wins: the loader rejects cross-unit collisions, so this only matters for
    # hand-built rosters, where ids (checked first in `find`) must not be shadowed by aliases.
    index: dict[str, str] = {}
    for unit in units.values():
        for key in (unit.name, *unit.aliases):
            index.setdefault(lookup_key(key), unit.id)
    return index


@dataclass(frozen=True, slots=True)
class Roster:
    """The whole directory: units in source order, working groups, and a content hash.

    `role_names` maps each declared role id to its Chinese description; roles may be declared
    without any unit using them.
    """

    units: Mapping[str, Unit]
    groups: Mapping[str, Group]
    version: str  # sha256 hex of the source text
    warnings: tuple[str, ...] = ()
    source: str = "<string>"
    role_names: Mapping[str, str] = field(default_factory=dict)
    _index: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Read-only views: a roster is shared between tasks and must not be mutated in place.
        object.__setattr__(self, "units", MappingProxyType(dict(self.units)))
        object.__setattr__(self, "groups", MappingProxyType(dict(self.groups)))
        object.__setattr__(self, "role_names", MappingProxyType(dict(self.role_names)))
        object.__setattr__(self, "_index", MappingProxyType(_build_index(self.units)))

    def find(self, name_or_id_or_alias: str) -> Unit | None:
        """Find a unit by id, official name or alias (whitespace-insensitive); None if absent."""
        unit = self.units.get(name_or_id_or_alias)
        if unit is not None:
            return unit
        unit_id = self._index.get(lookup_key(name_or_id_or_alias))
        return None if unit_id is None else self.units[unit_id]

    def roles(self) -> tuple[str, ...]:
        """All roles used by at least one unit, sorted."""
        return tuple(sorted({role for unit in self.units.values() for role in unit.roles}))

    def with_extra_contacts(self, extra: Mapping[str, Sequence[Contact]]) -> Roster:
        """Return a copy with `extra` contacts appended to the named units.

        The key "*" adds its contacts to every unit (e.g. a test webhook for drills). The
        version changes with the extras, because the hash is what audit records: two rosters
        that reach different endpoints must not share a version.

        Raises:
            KeyError: a key is neither "*" nor a unit id (the message names it).
        """
        unknown = [key for key in extra if key != "*" and key not in self.units]
        if unknown:
            raise KeyError(f"unknown unit id(s) for extra contacts: {', '.join(map(repr, unknown))}")
        everyone = tuple(extra.get("*", ()))
        units: dict[str, Unit] = {}
        for unit_id, unit in self.units.items():
            added = everyone + tuple(extra.get(unit_id, ()))
            units[unit_id] = replace(unit, contacts=unit.contacts + added) if added else unit
        return Roster(
            units=units,
            groups=self.groups,
            version=_extended_version(self.version, extra),
            warnings=self.warnings,
            source=self.source,
            role_names=self.role_names,
        )

    def to_json(self) -> list[dict[str, Any]]:
        """Every unit as plain JSON, in roster order."""
        return [unit.to_json() for unit in self.units.values()]


def _extended_version(base: str, extra: Mapping[str, Sequence[Contact]]) -> str:
    """sha256 of `base`, a newline and json.dumps({key: [contact.to_json()...]}, sort_keys=True,
    ensure_ascii=False), hashed piece by piece: the same digest without the whole document in
    memory (100,000 extra webhooks made it a ~50 MiB start-up peak)."""
    digest = hashlib.sha256(f"{base}\n{{".encode())
    for i, key in enumerate(sorted(extra)):
        digest.update(f"{', ' if i else ''}{json.dumps(key, ensure_ascii=False)}: [".encode())
        for j, contact in enumerate(extra[key]):
            item = json.dumps(contact.to_json(), sort_keys=True, ensure_ascii=False)
            digest.update(f"{', ' if j else ''}{item}".encode())
        digest.update(b"]")
    digest.update(b"}")
    return digest.hexdigest()
