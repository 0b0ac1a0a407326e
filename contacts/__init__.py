"""Roster of the Zezhou heavy-pollution-weather emergency HQ: units, contacts, resolver.

This package must never import `gateway` or `channels`: the gateway wires it to the channels
by matching `Endpoint.kind` to channel names.
"""

from __future__ import annotations

from contacts.loader import PACKAGED_ROSTER, load_roster, load_roster_text
from contacts.model import Contact, Group, Roster, RosterError, Unit
from contacts.numbers import mask, parse_number
from contacts.resolver import Audience, Endpoint, Recipient, StaticResolver, UnknownAudience

__all__ = [
    "PACKAGED_ROSTER",
    "Audience",
    "Contact",
    "Endpoint",
    "Group",
    "Recipient",
    "Roster",
    "RosterError",
    "StaticResolver",
    "Unit",
    "UnknownAudience",
    "load_roster",
    "load_roster_text",
    "mask",
    "parse_number",
]
