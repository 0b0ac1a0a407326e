"""The one place a delivery is built.

Every delivery (planned at intake, a fallback call, an escalation's repeated call or its note to
the HQ office, a public message's webhook) gets its id, endpoint key, attempt budget, deadline and
cause id here, and a follow-up's choice of contact is made here. A new kind of delivery is one
more call of `Deliveries.build`, not a sixth copy of these rules.

Pure: no I/O, no clock but the one given.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from contacts.model import Unit
from contacts.resolver import Recipient
from gateway.events import Event
from gateway.policy import Policy
from gateway.store.records import PlannedDelivery

__all__ = [
    "MIN_DEADLINE", "Deliveries", "deadline_for", "delivery_ids", "endpoint_key", "escalation_cause", "fallback_cause",
    "new_delivery_id", "notify_cause", "public_cause", "report_cause",
]

MIN_DEADLINE = timedelta(minutes=10)


def new_delivery_id() -> str:
    return "dl_" + secrets.token_hex(10)


def delivery_ids() -> Iterator[str]:
    """Ids for one event's deliveries, the same form as `new_delivery_id`: a random prefix per
    event and a counter, so a fan-out's rows go into the primary-key index in order (a random
    id per row put each insert on a random page) and there is no random draw per row. Ids are
    names, not secrets: ack links carry their own MAC."""
    prefix = "dl_" + secrets.token_hex(6)
    return (f"{prefix}{n:08x}" for n in itertools.count())


def endpoint_key(channel: str, address: str) -> str:
    """Deliveries sharing a key share a concurrency limit: a webhook origin, or the provider."""
    if channel == "webhook":
        # interned: every delivery to an origin shares one string (100,000 copies were ~7 MiB)
        return sys.intern(f"webhook:{_origin(address)}")
    return channel


# A plain http(s) URL: printable ASCII without spaces, no IPv6 brackets in its netloc.
_PLAIN_URL = re.compile(r"(https?://[!-\"$-.0->@-Z\\^-~]*)(?:[/?#][!-~]*)?")


def _origin(url: str) -> str:
    """`scheme://netloc` as `urlsplit` has it; a plain URL is cut by one regex match (urlsplit
    misses its own 128-entry cache on a roster of 100,000 URLs: a third of planning them)."""
    m = _PLAIN_URL.fullmatch(url)
    if m is not None:
        return m.group(1)
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


def deadline_for(event: Event, accepted: datetime, horizon: timedelta) -> float:
    """An event's deliveries end at the horizon, or earlier when the event's validity ends first
    (but never sooner than MIN_DEADLINE after acceptance: a short validity still gets sent)."""
    end = accepted + horizon
    if event.valid_until is not None and event.valid_until > accepted + MIN_DEADLINE:
        end = min(end, event.valid_until)
    return end.timestamp()


# ---- cause ids: a follow-up's cause id is unique per event, so a follow-up is created only once
def fallback_cause(failed_delivery_id: str) -> str:
    """A fallback call is caused by the delivery that failed."""
    return failed_delivery_id


def escalation_cause(event_id: str, unit_id: str, step: int) -> str:
    """An escalation step's repeated call to one unit."""
    return f"esc:{event_id}:{unit_id}:{step}"


def notify_cause(event_id: str, step: int, unit_ids: Iterable[str], channel: str, address: str) -> str:
    """An escalation step's note to the HQ office about a set of unconfirmed units, per address."""
    digest = hashlib.sha256(",".join(sorted(unit_ids)).encode()).hexdigest()[:12]
    return f"esc:{event_id}:notify:{step}:{digest}:{channel}:{address}"


def public_cause(pm_id: str, unit_id: str, address: str, round_: int = 0) -> str:
    """A public message to one platform; `round_` > 0 is a periodic re-broadcast, sent once each."""
    return f"{pm_id}:{unit_id}:{address}" + (f":r{round_}" if round_ else "")


def report_cause(request_key: str, step: str, unit_id: str, channel: str, address: str) -> str:
    """A report schedule's message (reminder, missing list, roll-up) to one unit, per address."""
    return f"rpt:{request_key}:{step}:{unit_id}:{channel}:{address}"


class Deliveries:
    """Builds deliveries for one runtime: its policy (attempts, horizon) and the enabled channels."""

    def __init__(self, policy: Policy, channels: Collection[str], clock: Callable[[], float] = time.time):
        self.policy = policy
        self.channels = frozenset(channels)
        self.clock = clock

    def enabled(self, channel: str) -> bool:
        return channel in self.channels

    def build(self, *, unit_id: str, unit_name: str, channel: str, address: str, text: str, payload: str = "",
              priority: int = 0, deadline: float | None = None, cause_id: str | None = None,
              delivery_id: str | None = None) -> PlannedDelivery:
        """One delivery. Without `deadline` it ends one policy horizon from now; without
        `delivery_id` it gets a fresh id (the planner passes one when the text links to it)."""
        return PlannedDelivery(
            id=delivery_id or new_delivery_id(), unit_id=unit_id, unit_name=unit_name, channel=channel,
            address=address, endpoint_key=endpoint_key(channel, address), text=text, payload=payload,
            max_attempts=self.policy.max_attempts(channel), priority=priority,
            deadline=self.clock() + self.policy.horizon.total_seconds() if deadline is None else deadline,
            cause_id=cause_id,
        )

    # ---- contact choice
    def plan_targets(self, recipient: Recipient, channels: Iterable[str],
                     warnings: list[str]) -> list[tuple[str, str, str]]:
        """(channel, address, format) for one planned unit; every webhook endpoint, the first
        address of other channels. SMS to a landline-only unit becomes voice. A channel that is
        not enabled is named in `warnings`."""
        wanted = list(channels)
        eps = recipient.endpoints
        out: list[tuple[str, str, str]] = []
        for ch in wanted:
            if ch not in self.channels:
                warnings.append(f"channel {ch} is not enabled; {recipient.unit_id} not reached by it")
                continue
            addrs = [e.address for e in eps if e.kind == ch]
            if ch == "webhook":
                out.extend(("webhook", e.address, e.format) for e in eps if e.kind == "webhook")
            elif addrs:
                out.append((ch, addrs[0], ""))
            elif ch == "sms" and "voice" in self.channels:
                voice = [e.address for e in eps if e.kind == "voice"]
                if voice and "voice" not in wanted:
                    out.append(("voice", voice[0], ""))
        return list(dict.fromkeys(out))

    def fallback_voice(self, unit: Unit, failed_channel: str, used: Collection[str]) -> str | None:
        """The number a fallback call goes to, None when voice is off or every number was tried.
        After an SMS a landline comes first (an SMS failure often means the mobile is off); after
        a call, the next number not yet used for this event."""
        if "voice" not in self.channels:
            return None
        mobiles = {c.address for c in unit.contacts if c.kind == "mobile"}
        phones = [c.address for c in unit.contacts if c.kind in ("fixed", "mobile")]
        if failed_channel == "sms":
            order = [a for a in phones if a not in mobiles] + [a for a in phones if a in mobiles]
        else:
            order = [a for a in phones if a not in used]
        return next(iter(order), None)

    def repeat_voice(self, unit: Unit) -> str | None:
        """The number an escalation's repeated call goes to: the unit's first phone."""
        if "voice" not in self.channels:
            return None
        return next((c.address for c in unit.contacts if c.kind in ("fixed", "mobile")), None)

    def office_targets(self, office: Unit) -> list[tuple[str, str]]:
        """(channel, address) for a note to an office: every URL, and its first mobile by SMS or
        else its first landline by voice; only enabled channels."""
        targets = [("webhook", c.address) for c in office.contacts if c.kind == "url"]
        mobiles = [c.address for c in office.contacts if c.kind == "mobile"]
        fixed = [c.address for c in office.contacts if c.kind == "fixed"]
        if mobiles and "sms" in self.channels:
            targets.append(("sms", mobiles[0]))
        elif fixed and "voice" in self.channels:
            targets.append(("voice", fixed[0]))
        return [(ch, addr) for ch, addr in targets if ch in self.channels]

    def webhooks(self, unit: Unit) -> list[str]:
        """Every URL of a unit when webhooks are enabled (a public message goes to each)."""
        if "webhook" not in self.channels:
            return []
        return [c.address for c in unit.contacts if c.kind == "url"]
