"""Turn an audience selector (roles, working groups, units) into recipients with endpoints.

The gateway matches `Endpoint.kind` to channel names ("sms", "voice", "webhook"), so this
package never needs to import `channels`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from contacts.model import Actions, Contact, Roster, Unit

__all__ = ["Audience", "Endpoint", "Recipient", "StaticResolver", "UnknownAudience", "endpoints_for"]

# Which channels can use a contact. A fixed line can't receive SMS in China, so it only gets
# voice; a mobile gets both so policy can choose (and escalate from SMS to voice).
_CHANNELS_BY_KIND: dict[str, tuple[str, ...]] = {
    "mobile": ("sms", "voice"),
    "fixed": ("voice",),
    "url": ("webhook",),
}


def _as_tuple(value: Iterable[str] | str) -> tuple[str, ...]:
    # A bare string would otherwise be split into characters: Audience(roles="hq").
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True, slots=True)
class Audience:
    """Who should get a notification: the union of roles, working groups and named units.

    `units` accepts unit ids, official names or aliases.
    """

    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    units: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Callers build audiences from YAML/JSON lists; store tuples so the value stays hashable.
        for name in ("roles", "groups", "units"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))

    @property
    def is_empty(self) -> bool:
        """True when no role, group or unit is selected."""
        return not (self.roles or self.groups or self.units)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address usable by one channel; `kind` is the channel name."""

    kind: str  # "sms" | "voice" | "webhook"
    address: str  # E.164 or URL
    format: str = "json"  # webhooks: "json" or "cap"


@dataclass(frozen=True, slots=True)
class Recipient:
    """A unit selected for a notification, with every endpoint its channels can use."""

    unit_id: str
    unit_name: str
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    duties: str
    endpoints: tuple[Endpoint, ...]
    actions: Actions = field(default_factory=Actions)


class UnknownAudience(ValueError):
    """The audience names roles, groups or units the roster doesn't know (all are listed)."""

    def __init__(
        self, roles: Iterable[str] = (), groups: Iterable[str] = (), units: Iterable[str] = ()
    ) -> None:
        self.roles, self.groups, self.units = tuple(roles), tuple(groups), tuple(units)
        parts = [
            f"unknown {what}: {', '.join(map(repr, names))}"
            for what, names in (("role(s)", self.roles), ("group(s)", self.groups), ("unit(s)", self.units))
            if names
        ]
        super().__init__("; ".join(parts))


def endpoints_for(contacts: Iterable[Contact]) -> tuple[Endpoint, ...]:
    """Expand contacts into channel endpoints, in contact order, without duplicates.

    Contacts of a kind no channel handles are skipped rather than failing the whole fan-out.
    """
    endpoints = (
        Endpoint(kind=channel, address=contact.address, format=contact.format or "json")
        for contact in contacts
        for channel in _CHANNELS_BY_KIND.get(contact.kind, ())
    )
    return tuple(dict.fromkeys(endpoints))


def _recipient(unit: Unit) -> Recipient:
    return Recipient(
        unit_id=unit.id,
        unit_name=unit.name,
        roles=unit.roles,
        groups=unit.groups,
        duties=unit.duties,
        endpoints=endpoints_for(unit.contacts),
        actions=unit.actions,
    )


class StaticResolver:
    """Resolves audiences against a fixed, in-memory roster (the YAML file)."""

    def __init__(self, roster: Roster) -> None:
        """Wrap `roster`; recipients are precomputed since the roster is immutable."""
        self._roster = roster
        self._recipients = {unit_id: _recipient(unit) for unit_id, unit in roster.units.items()}

    @property
    def version(self) -> str:
        """Content hash of the roster, recorded with every event for audit."""
        return self._roster.version

    @property
    def roster(self) -> Roster:
        """The roster this resolver reads."""
        return self._roster

    def _check(self, audience: Audience) -> dict[str, str]:
        known_roles = set(self._roster.role_names) | set(self._roster.roles())
        named = {name: self._roster.find(name) for name in audience.units}
        bad_roles = [r for r in audience.roles if r not in known_roles]
        bad_groups = [g for g in audience.groups if g not in self._roster.groups]
        bad_units = [name for name, unit in named.items() if unit is None]
        if bad_roles or bad_groups or bad_units:
            raise UnknownAudience(bad_roles, bad_groups, bad_units)
        return {name: unit.id for name, unit in named.items() if unit is not None}

    async def resolve(
        self, audience: Audience, *, at: datetime | None = None, exercise: bool = False
    ) -> list[Recipient]:
        """Units matching any selected role, group (lead and members) or unit, in roster order.

        `at` and `exercise` are accepted for interface compatibility and ignored: a static
        roster has no duty rota, and drills are routed by giving the gateway a resolver over
        the test roster. An empty audience resolves to no recipients.

        Raises:
            UnknownAudience: a role, group or unit is not in the roster; every unknown name
                is listed, so nothing is sent to a partial audience.
        """
        selected = set(self._check(audience).values())
        roles = set(audience.roles)
        for group_id in audience.groups:
            selected.update(self._roster.groups[group_id].unit_ids)
        return [
            recipient
            for unit_id, recipient in self._recipients.items()
            if unit_id in selected or roles.intersection(recipient.roles)
        ]
