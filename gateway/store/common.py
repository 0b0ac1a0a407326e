"""Backend-neutral helpers shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.events import ENDING_TYPES, EventType
from gateway.masking import mask_address
from gateway.store.records import NewEvent, OutboxItem

SWEEP_EVERY = 1.0  # seconds between sweeps of lost leases and passed deadlines

ITEM_COLUMNS = (
    "id, event_id, unit_id, channel, address, endpoint_key, text, payload, attempts, max_attempts,"
    " deadline, lease_token, accepted_at, level, event_status, priority"
)


def new_token() -> str:
    return secrets.token_hex(8)


def initial_state(event: NewEvent) -> str:
    return "ended" if EventType(event.type) in ENDING_TYPES else "active"


def item_from_row(r: Mapping[str, Any]) -> OutboxItem:
    return OutboxItem(
        id=r["id"], event_id=r["event_id"], unit_id=r["unit_id"], channel=r["channel"],
        address=r["address"], endpoint_key=r["endpoint_key"], text=r["text"], payload=r["payload"],
        attempts=r["attempts"], max_attempts=r["max_attempts"], deadline=r["deadline"],
        lease_token=r["lease_token"], accepted_at=r["accepted_at"], level=r["level"],
        status=r["event_status"], priority=r["priority"],
    )


def ts(v: float | None) -> str | None:
    """UNIX seconds to RFC 3339 UTC, for API answers."""
    if v is None:
        return None
    return datetime.fromtimestamp(v, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def delivery_view(r: Mapping[str, Any], acked_at: float | None) -> dict[str, Any]:
    view = _delivery_view(r, acked_at)
    if r["status"] == "held":  # a draft's preview: exactly what the unit will receive once signed
        view["text"] = r["text"]
    return view


def _delivery_view(r: Mapping[str, Any], acked_at: float | None) -> dict[str, Any]:
    return {
        "id": r["id"],
        "unit_id": r["unit_id"],
        "unit_name": r["unit_name"],
        "channel": r["channel"],
        "address": mask_address(r["address"]),
        "status": r["status"],
        "attempts": r["attempts"],
        "last_error": r["last_error"],
        "reason": r["reason"],
        "cause_id": r["cause_id"],
        "provider_ref": r["provider_ref"],
        "next_attempt_at": ts(r["next_attempt_at"]) if r["status"] == "pending" else None,
        "sent_at": ts(r["sent_at"]),
        "delivered_at": ts(r["delivered_at"]),
        "acked_at": ts(acked_at),
    }


def unit_view(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "unit_id": r["unit_id"],
        "unit_name": r["unit_name"],
        "ack_required": bool(r["required"]),
        "ack_deadline": ts(r["deadline"]),
        "acked_at": ts(r["acked_at"]),
        "acked_by": r["acked_by"],
        "via": r["via"],
        "escalation_step": r["escalation_step"],
    }


def event_head(r: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "type": r["type"],
        "level": r["level"],
        "status": r["status"],
        "state": r["state"],
        "supersedes": r["supersedes"],
        "chain_id": r["chain_id"],
        "source": r["source"],
        "submitted_by": r["principal"],
        "accepted_at": ts(r["accepted_at"]),
        "valid_until": data.get("valid_until"),
        "headline": data.get("headline"),
        "area": data.get("area"),
    }


def origin_of(answer: str) -> Any:
    """What the source said about itself (CAP version, verified signer, references it named that
    were unknown), kept in the stored answer by intake; None for events without it."""
    return json.loads(answer).get("origin")


def summarise(
    deliveries: list[dict[str, Any]], units: list[dict[str, Any]]
) -> dict[str, Any]:
    by_status: dict[str, int] = {}
    for d in deliveries:
        by_status[d["status"]] = by_status.get(d["status"], 0) + 1
    required = [u for u in units if u["ack_required"]]
    return {
        "deliveries": len(deliveries),
        "by_status": by_status,
        "units": len(units),
        "acks_required": len(required),
        "acked": sum(1 for u in required if u["acked_at"]),  # of the units asked to confirm
        "acked_any": sum(1 for u in units if u["acked_at"]),
        "unacked_units": [u["unit_id"] for u in required if not u["acked_at"]],
    }


def audit_hash(seq: int, at: float, principal: str, action: str, subject: str, detail: str, prev: str) -> str:
    """The chain link: SHA-256 over the record's content and the previous record's hash."""
    blob = json.dumps([seq, repr(at), principal, action, subject, detail, prev], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
