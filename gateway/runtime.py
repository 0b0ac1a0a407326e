"""The immutable runtime: roster, resolver, policy and planner, loaded and checked together.
SIGHUP replaces the whole of it atomically; a bad file is rejected and the running one stays.
Also the pure helpers intake needs to turn an accepted event into its store record.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contacts.loader import load_roster
from contacts.model import Contact, Roster
from contacts.numbers import parse_number
from contacts.resolver import StaticResolver
from gateway.acklinks import AckLinks
from gateway.config import Config
from gateway.deliveries import Deliveries
from gateway.events import Event, body_hash
from gateway.planner import Planner
from gateway.policy import Policy, load_policy
from gateway.render import Renderer
from gateway.reportlinks import ReportLinks
from gateway.store.base import NewEvent


@dataclass(frozen=True)
class Runtime:
    roster: Roster
    resolver: StaticResolver
    policy: Policy
    planner: Planner

    @property
    def deliveries(self) -> Deliveries:
        """The delivery factory of this runtime's policy and channels."""
        return self.planner.deliveries


def load_runtime(cfg: Config, *, base_url: str, renderer: Renderer, channels: Collection[str],
                 links: AckLinks, report_links: ReportLinks | None = None, roster: Roster | None = None,
                 policy: Policy | None = None) -> Runtime:
    """Load roster and policy and check they fit together. `roster` (the directory in the store)
    and `policy` replace the configured files when given.

    Raises:
        contacts.model.RosterError, gateway.policy.PolicyError, ValueError.
    """
    roster = roster if roster is not None else load_roster(cfg.roster.path)
    extra = extra_contacts(cfg.roster.extra_contacts, roster, base_url)
    if extra:
        roster = roster.with_extra_contacts(extra)
    policy = policy if policy is not None else load_policy(cfg.policy.path)
    problems = check_policy_against_roster(policy, roster)
    if problems:
        raise ValueError("; ".join(problems))
    resolver = StaticResolver(roster)
    planner = Planner(policy, resolver, renderer, channels, links=links, report_links=report_links)
    return Runtime(roster, resolver, policy, planner)


def extra_contact(entry: dict[str, str], unit_id: str, base_url: str) -> Contact:
    """One `roster.extra_contacts` entry: `{url, label?, format?}` or `{number, label?}`.

    Raises:
        ValueError: neither url nor number, an unknown webhook format, or a malformed number.
    """
    if "url" in entry:
        fmt = entry.get("format", "json")
        if fmt not in ("json", "cap"):
            raise ValueError(f"roster.extra_contacts for {unit_id}: unknown webhook format {fmt!r}: use json or cap")
        url = entry["url"].format(base_url=base_url, unit_id=unit_id)
        return Contact("url", url, entry["url"], entry.get("label", "webhook"), fmt)
    if "number" in entry:
        try:
            parsed = parse_number(entry["number"])
        except ValueError as exc:
            raise ValueError(f"roster.extra_contacts for {unit_id}: {exc}") from exc
        return Contact(parsed.kind, parsed.address, entry["number"], entry.get("label", ""))
    raise ValueError(f"roster.extra_contacts for {unit_id}: each entry needs a url or a number")


def extra_contacts(config: dict[str, list[dict[str, str]]], roster: Roster, base_url: str) -> dict[str, list[Contact]]:
    """Every configured extra contact by unit id (`*` expands to every unit).

    Raises:
        ValueError: a bad entry (see `extra_contact`) or an unknown unit id.
    """
    out: dict[str, list[Contact]] = {}
    for key, entries in config.items():
        if key != "*" and key not in roster.units:
            raise ValueError(f"roster.extra_contacts: unknown unit id {key!r}")
        for uid in (roster.units if key == "*" else [key]):
            out.setdefault(uid, []).extend(extra_contact(e, uid, base_url) for e in entries)
    return out


def check_policy_against_roster(policy: Policy, roster: Roster) -> list[str]:
    """Every role, group and unit the policy names must exist in the roster."""
    roles, groups = set(roster.roles()), set(roster.groups)
    problems = []
    for name, aud in policy.audiences():
        problems += [f"policy rule {name}: unknown role {r}" for r in aud.roles if r not in roles]
        problems += [f"policy rule {name}: unknown group {g}" for g in aud.groups if g not in groups]
        problems += [f"policy rule {name}: unknown unit {u}" for u in aud.units if roster.find(u) is None]
    return problems


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_event(event: Event, *, event_id: str, source: str, principal: str, accepted: datetime,
              answer: dict[str, Any], rt: Runtime, escalation: list[dict[str, Any]]) -> NewEvent:
    data = event.canonical()
    return NewEvent(
        id=event_id, body_hash=body_hash(data), data=data, type=event.type.value,
        level=event.level.value if event.level else None, status=event.status.value,
        supersedes=event.supersedes, source=source, principal=principal,
        accepted_at=accepted.timestamp(),
        valid_until=event.valid_until.timestamp() if event.valid_until else None, answer=answer,
        roster_version=rt.roster.version, policy_version=rt.policy.version, escalation=escalation,
    )
