"""Load and validate a roster YAML file (see contacts/rosters/zezhou.yaml for the format).

Validation collects every problem before failing: an operator fixing the roster at 3 a.m.
during a red warning should see all mistakes at once, not one per restart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable, Mapping
from dataclasses import replace
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from contacts.model import ACTION_KEYS, Actions, Contact, Group, Roster, RosterError, Unit, lookup_key
from contacts.numbers import parse_number
from contacts.people import people_from_yaml

__all__ = ["PACKAGED_ROSTER", "RosterError", "load_roster", "load_roster_text"]

PACKAGED_ROSTER = "contacts/rosters/zezhou.yaml"

_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_TOP_KEYS = frozenset({"roles", "groups", "units"})
_UNIT_KEYS = frozenset({"id", "name", "aliases", "roles", "duties", "contacts", "actions", "persons", "duty"})
_ACTION_KEYS = frozenset(ACTION_KEYS)
MAX_ACTION_CHARS = 24  # an action line is one clause of a two-segment SMS: longer ones cannot fit it
_GROUP_KEYS = frozenset({"id", "name", "lead", "members", "duties"})
_CONTACT_KEYS = frozenset({"number", "url", "label", "format"})
WEBHOOK_FORMATS = ("json", "cap")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys, which PyYAML silently overwrites."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, object]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    line = key_node.start_mark.line + 1
                    self.duplicates.append(f"line {line}: duplicate key {key_node.value!r}")
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


class _Checker:
    """Accumulates errors and warnings while turning parsed YAML into roster values."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def mapping(self, value: object, where: str, allowed: frozenset[str]) -> dict[str, object] | None:
        if not isinstance(value, dict):
            self.errors.append(f"{where}: expected a mapping, got {type(value).__name__}")
            return None
        for key in value:
            if key not in allowed:
                self.errors.append(f"{where}: unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")
        return {str(k): v for k, v in value.items()}

    def text(self, obj: Mapping[str, object], key: str, where: str, *, required: bool = True) -> str:
        value = obj.get(key)
        if value is None:
            if required:
                self.errors.append(f"{where}: missing field {key!r}")
            return ""
        if not isinstance(value, str):
            # Unquoted digits become ints (or octal, e.g. 03562026736), so insist on strings.
            self.errors.append(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
            return ""
        if required and not value.strip():
            self.errors.append(f"{where}: field {key!r} is empty")
        return value

    def texts(self, obj: Mapping[str, object], key: str, where: str, *, required: bool = True) -> list[str]:
        value = obj.get(key)
        if value is None:
            if required:
                self.errors.append(f"{where}: missing field {key!r}")
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.errors.append(f"{where}: field {key!r} must be a list of non-empty strings")
            return []
        return list(value)

    def ident(self, obj: Mapping[str, object], where: str) -> str:
        value = self.text(obj, "id", where)
        if value and not _ID.match(value):
            self.errors.append(f"{where}: id {value!r} must be lower-case ascii snake_case")
        return value


def _contact(check: _Checker, raw: object, where: str) -> Contact | None:
    entry = check.mapping(raw, where, _CONTACT_KEYS)
    if entry is None:
        return None
    label = check.text(entry, "label", where, required=False)
    if ("number" in entry) == ("url" in entry):
        check.errors.append(f"{where}: needs exactly one of 'number' or 'url'")
        return None
    if "url" in entry:
        url = check.text(entry, "url", where)
        parts = urlsplit(url)
        if url and (parts.scheme not in ("http", "https") or not parts.netloc):
            check.errors.append(f"{where}: malformed url {url!r} (need http(s)://host/...)")
            return None
        fmt = check.text(entry, "format", where, required=False) or "json"
        if fmt not in WEBHOOK_FORMATS:
            check.errors.append(f"{where}: format {fmt!r} must be one of {', '.join(WEBHOOK_FORMATS)}")
            return None
        return Contact(kind="url", address=url, raw=url, label=label, format=fmt) if url else None
    if "format" in entry:
        check.errors.append(f"{where}: format applies to url contacts only")
        return None
    number = check.text(entry, "number", where)
    if not number:
        return None
    try:
        return replace(parse_number(number), label=label)
    except ValueError as exc:
        check.errors.append(f"{where}: {exc}")
        return None


def _actions(check: _Checker, raw: object, where: str) -> Actions:
    if raw is None:
        return Actions()
    entry = check.mapping(raw, f"{where} actions", _ACTION_KEYS)
    if entry is None:
        return Actions()
    lines: dict[str, str] = {}
    for key in ACTION_KEYS:
        if key not in entry:
            continue
        line = check.text(entry, key, f"{where} actions")
        if len(line) > MAX_ACTION_CHARS:
            check.errors.append(f"{where} actions: {key!r} has {len(line)} characters; at most "
                                f"{MAX_ACTION_CHARS} fit an SMS beside the notice")
        lines[key] = line.strip()
    return Actions(**lines)


def _roles(check: _Checker, raw: object) -> dict[str, str]:
    if not isinstance(raw, dict) or not raw:
        check.errors.append("roles: expected a non-empty mapping of role id to its Chinese description")
        return {}
    roles: dict[str, str] = {}
    for role, description in raw.items():
        if not isinstance(role, str) or not _ID.match(role):
            check.errors.append(f"roles: role id {role!r} must be lower-case ascii snake_case")
        elif not isinstance(description, str) or not description.strip():
            check.errors.append(f"roles: role {role!r} needs a description")
        else:
            roles[role] = description
    return roles


def _unit(
    check: _Checker, raw: object, index: int, declared: Mapping[str, str], ambiguous: set[object]
) -> Unit | None:
    entry = check.mapping(raw, f"units[{index}]", _UNIT_KEYS)
    if entry is None:
        return None
    unit_id = check.ident(entry, f"units[{index}]")
    # With a duplicated id, "unit 'x'" would not say which entry is meant, so add the position.
    where = f"unit {unit_id!r}" if unit_id else f"units[{index}]"
    if unit_id in ambiguous:
        where = f"units[{index}] {unit_id!r}"
    roles = check.texts(entry, "roles", where)
    for role in roles:
        if declared and role not in declared:
            check.errors.append(f"{where}: unknown role {role!r} (declared: {', '.join(declared)})")
    if "roles" in entry and not roles:
        check.warnings.append(f"{where}: has no roles (reachable only by id, name or group)")
    raw_contacts = entry.get("contacts")
    if not isinstance(raw_contacts, list):
        check.errors.append(f"{where}: missing field 'contacts' (a list)")
        raw_contacts = []
    elif not raw_contacts:
        check.warnings.append(f"{where}: has no contacts")
    contacts = [_contact(check, c, f"{where} contacts[{i}]") for i, c in enumerate(raw_contacts)]
    persons, duty, problems = people_from_yaml(unit_id, entry.get("persons"), entry.get("duty"), where)
    check.errors.extend(problems)
    return Unit(
        id=unit_id,
        name=check.text(entry, "name", where),
        aliases=tuple(check.texts(entry, "aliases", where, required=False)),
        roles=tuple(dict.fromkeys(roles)),
        groups=(),  # derived from the groups section once all units are known
        duties=check.text(entry, "duties", where, required=False),
        contacts=tuple(c for c in contacts if c is not None),
        actions=_actions(check, entry.get("actions"), where),
        persons=persons,
        duty=duty,
    )


def _units(check: _Checker, raw: object, declared: Mapping[str, str]) -> dict[str, Unit]:
    if not isinstance(raw, list) or not raw:
        check.errors.append("units: expected a non-empty list of units")
        return {}
    ids = [entry.get("id") for entry in raw if isinstance(entry, dict)]
    ambiguous = {i for i in ids if ids.count(i) > 1}
    units: dict[str, Unit] = {}
    for index, entry in enumerate(raw):
        unit = _unit(check, entry, index, declared, ambiguous)
        if unit is None or not unit.id:
            continue
        if unit.id in units:
            check.errors.append(f"units[{index}]: duplicate unit id {unit.id!r}")
            continue
        units[unit.id] = unit
    return units


def _check_names(check: _Checker, units: Mapping[str, Unit]) -> None:
    # Ids, names and aliases share one namespace because `Roster.find` accepts any of them.
    owner: dict[str, str] = {lookup_key(unit_id): unit_id for unit_id in units}
    for unit in units.values():
        for name in dict.fromkeys(lookup_key(n) for n in (unit.name, *unit.aliases) if n):
            other = owner.setdefault(name, unit.id)
            if other != unit.id:
                check.errors.append(f"unit {unit.id!r}: name/alias {name!r} also used by unit {other!r}")


def _check_person_ids(check: _Checker, units: Mapping[str, Unit]) -> None:
    # Person ids are unique roster-wide: the sheet, acks and escalation records name a person by id.
    owner: dict[str, str] = {}
    for unit in units.values():
        for person in unit.persons:
            other = owner.setdefault(person.id, unit.id)
            if other != unit.id:
                check.errors.append(f"unit {unit.id!r}: person id {person.id!r} also used by unit {other!r}")


def _unit_ref(check: _Checker, value: str, where: str, units: Mapping[str, Unit]) -> None:
    if value in units:
        return
    key = lookup_key(value)
    hint = next((u.id for u in units.values() if key in {lookup_key(n) for n in (u.name, *u.aliases)}), None)
    suggestion = f" (did you mean {hint!r}?)" if hint else ""
    check.errors.append(f"{where}: unknown unit id {value!r}{suggestion}")


def _groups(check: _Checker, raw: object, units: Mapping[str, Unit]) -> dict[str, Group]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        check.errors.append("groups: expected a list of working groups")
        return {}
    groups: dict[str, Group] = {}
    for index, item in enumerate(raw):
        entry = check.mapping(item, f"groups[{index}]", _GROUP_KEYS)
        if entry is None:
            continue
        group_id = check.ident(entry, f"groups[{index}]")
        where = f"group {group_id!r}" if group_id else f"groups[{index}]"
        name, lead = check.text(entry, "name", where), check.text(entry, "lead", where)
        duties = check.text(entry, "duties", where, required=False)
        members = check.texts(entry, "members", where)
        if lead:
            _unit_ref(check, lead, f"{where} lead", units)
        for member in members:
            _unit_ref(check, member, f"{where} member", units)
        for member in {m for m in members if members.count(m) > 1}:
            check.errors.append(f"{where}: member {member!r} listed more than once")
        if group_id in groups:
            check.errors.append(f"groups[{index}]: duplicate group id {group_id!r}")
        elif group_id:
            groups[group_id] = Group(group_id, name, lead, tuple(members), duties)
    return groups


def _shared_numbers(units: Mapping[str, Unit]) -> list[str]:
    # A shared number is legal (the seed has one) but suspicious: acks and escalation are per
    # unit, so one phone answering for two units is worth an operator's attention.
    holders: dict[str, list[Unit]] = {}
    for unit in units.values():
        for address in dict.fromkeys(c.address for c in unit.contacts if c.kind != "url"):
            holders.setdefault(address, []).append(unit)
    warnings = []
    for address, sharing in holders.items():
        if len(sharing) > 1:
            raws = sorted({c.raw for u in sharing for c in u.contacts if c.address == address})
            who = ", ".join(f"{u.id!r} ({u.name})" for u in sharing)
            warnings.append(f"number {address} ({' / '.join(raws)}) is shared by units {who}")
    return warnings


def _parse_yaml(text: str, source: str) -> tuple[object, list[str]]:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data(), loader.duplicates
    except yaml.YAMLError as exc:
        raise RosterError([f"{source}: YAML syntax error: {exc}"]) from exc
    finally:
        loader.dispose()


def load_roster_text(text: str, source: str = "<string>") -> Roster:
    """Parse and validate roster YAML text.

    Raises:
        RosterError: on YAML syntax errors, duplicate keys, missing or unknown fields, unknown
            roles, unknown group lead/member ids, duplicate unit/group ids, names or aliases
            shared by two units, or malformed numbers/urls. It lists every problem found.
    """
    data, duplicates = _parse_yaml(text, source)
    if not isinstance(data, dict):
        raise RosterError([f"{source}: expected a mapping with 'roles', 'units' and 'groups'"])
    check = _Checker()
    check.errors.extend(duplicates)
    check.mapping(data, "roster", _TOP_KEYS)
    declared = _roles(check, data.get("roles"))
    units = _units(check, data.get("units"), declared)
    _check_names(check, units)
    _check_person_ids(check, units)
    groups = _groups(check, data.get("groups"), units)
    if check.errors:
        raise RosterError([f"{source}: {e}" for e in check.errors])
    for role in sorted(set(declared) - {r for u in units.values() for r in u.roles}):
        check.warnings.append(f"role {role!r} is declared but no unit has it")
    check.warnings.extend(_shared_numbers(units))
    derived = {
        unit_id: replace(unit, groups=tuple(g.id for g in groups.values() if unit_id in g.unit_ids))
        for unit_id, unit in units.items()
    }
    return Roster(
        units=derived,
        groups=groups,
        version=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        warnings=tuple(check.warnings),
        source=source,
        role_names=declared,
    )


def load_roster(path: str | Path | None = None) -> Roster:
    """Load a roster file; None loads the packaged Zezhou roster (contacts/rosters/zezhou.yaml).

    Raises:
        RosterError: the file can't be read or decoded, or fails validation (see
            `load_roster_text`).
    """
    if path is None:
        resource = resources.files("contacts").joinpath("rosters", "zezhou.yaml")
        return load_roster_text(resource.read_text(encoding="utf-8"), PACKAGED_ROSTER)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError([f"{file}: cannot read roster: {exc}"]) from exc
    return load_roster_text(text, str(file))
