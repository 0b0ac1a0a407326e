"""Compact views of the gateway's state for the console's live stream.

Each builder reads the store (or the metrics objects) and returns plain JSON; the stream sends
a view only when it differs from the last one sent, so these must be deterministic: no clocks
in them except what the store recorded (`oldest_pending` is rounded to whole seconds so a
steady queue does not re-send every tick).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway.store.base import UnknownEvent

if TYPE_CHECKING:
    from gateway.daemon import Gateway

RECENT_FAILURES = 20
_DELIVERY_KEYS = ("id", "unit_id", "unit_name", "channel", "address", "status", "attempts", "last_error",
                  "reason", "cause_id", "sent_at", "delivered_at", "next_attempt_at")
_HEAD_KEYS = ("id", "type", "level", "status", "state", "supersedes", "chain_id", "source", "submitted_by",
              "accepted_at", "valid_until", "headline", "area")


def meta(g: Gateway, principal: str) -> dict[str, Any]:
    """Labels the page needs to group and name things: role and working-group names, channels,
    and the escalation steps of the policy in force (an event's own steps were frozen at intake
    from the policy of its time; after a reload they may differ, which the page says)."""
    roster = g.runtime.roster
    return {
        "principal": principal,
        "roles": dict(roster.role_names),
        "groups": {gid: grp.name for gid, grp in roster.groups.items()},
        "channels": sorted(g.channels),
        "escalation": [s.model_dump() for s in g.runtime.policy.model.escalation],
        "roster_warnings": len(roster.warnings),
    }


async def chains(g: Gateway) -> dict[str, Any]:
    """Active events (each the live head of a warning chain) and the most recent ones.

    An active event's `confirmed` counts the units that owe an ack and gave it: the store's
    summary `acked` also counts units that confirmed without being asked to, which would read
    as "37 / 37" while two units that must confirm have not.
    """
    active = await g.store.list_events(status="active", limit=100)
    for head in active:
        try:
            view = await g.store.get_event(head["id"])
        except UnknownEvent:
            continue  # cannot happen (events are never deleted); keep the head without counts
        head["valid_from"] = (view.get("event") or {}).get("valid_from")
        units = view["units"]
        required = [u for u in units if u["ack_required"]]
        head["confirmed"] = {"required": len(required), "acked": sum(1 for u in required if u["acked_at"])}
    return {"active": active, "recent": await g.store.list_events(status=None, limit=15)}


async def event(g: Gateway, event_id: str) -> dict[str, Any]:
    """The event's head, summary, units (with their role and working groups from the roster)
    and deliveries, without message bodies.

    Raises:
        gateway.store.base.UnknownEvent: no such event.
    """
    view = await g.store.get_event(event_id)
    roster = g.runtime.roster
    out: dict[str, Any] = {k: view.get(k) for k in _HEAD_KEYS}
    out["valid_from"] = (view.get("event") or {}).get("valid_from")
    out["summary"] = view["summary"]
    units = []
    for u in view["units"]:
        unit = roster.units.get(u["unit_id"])
        units.append({**u, "role": unit.roles[0] if unit and unit.roles else "",
                      "groups": list(unit.groups) if unit else [], "listed": True})
    # units reached without being on the event's ack list (public-message targets, the HQ office
    # told of escalations) still get a row on the board
    listed = {u["unit_id"] for u in units}
    for d in view["deliveries"]:
        if d["unit_id"] not in listed:
            listed.add(d["unit_id"])
            unit = roster.units.get(d["unit_id"])
            units.append({"unit_id": d["unit_id"], "unit_name": d["unit_name"], "ack_required": False,
                          "ack_deadline": None, "acked_at": None, "acked_by": None, "via": None,
                          "escalation_step": 0, "role": unit.roles[0] if unit and unit.roles else "",
                          "groups": list(unit.groups) if unit else [], "listed": False})
    out["units"] = units
    out["deliveries"] = [{k: d.get(k) for k in _DELIVERY_KEYS} for d in view["deliveries"]]
    return out


def _failure_counts(g: Gateway) -> list[dict[str, Any]]:
    out = []
    for metric in g.metrics.failures.collect():
        for s in metric.samples:
            if s.name.endswith("_total") and s.value:
                out.append({"channel": s.labels.get("channel", ""), "reason": s.labels.get("reason", ""),
                            "count": int(s.value)})
    return sorted(out, key=lambda r: (r["channel"], r["reason"]))


async def _recent_failures(g: Gateway) -> list[dict[str, Any]]:
    """Failed deliveries of the latest events; only events whose counts show a failure are read
    in full, so a healthy system costs one query here."""
    out: list[dict[str, Any]] = []
    for head in await g.store.list_events(status=None, limit=20):
        if not head["summary"]["by_status"].get("failed"):
            continue
        view = await g.store.get_event(head["id"])
        for d in view["deliveries"]:
            if d["status"] == "failed":
                out.append({"event_id": head["id"], "level": head["level"], "unit_id": d["unit_id"],
                            "unit_name": d["unit_name"], "channel": d["channel"], "address": d["address"],
                            "reason": d["reason"], "last_error": d["last_error"], "attempts": d["attempts"],
                            "sent_at": d["sent_at"]})
        if len(out) >= RECENT_FAILURES:
            break
    return out[:RECENT_FAILURES]


async def ops(g: Gateway) -> dict[str, Any]:
    """Queue depth, oldest pending and up/down per channel, failure counts and recent failures."""
    stats = await g.store.outbox_stats(time.time())
    channels = []
    for name in sorted(g.channels):
        # the same test as the gateway_channel_up gauge: circuit closed and credentials accepted
        up = g.dispatcher.channel_up(name) and bool(getattr(g.channels[name].channel, "is_up", lambda: True)())
        channels.append({"name": name, "depth": stats.depth.get(name, 0),
                         "oldest_pending": round(stats.oldest_pending.get(name, 0.0)), "up": up})
    return {"channels": channels, "failure_counts": _failure_counts(g),
            "recent_failures": await _recent_failures(g)}
