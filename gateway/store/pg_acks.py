"""Receipts, acknowledgements and fallbacks on PostgreSQL (transaction bodies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.pg_conn import Conn, affected, as_dict
from gateway.store.pg_tx import notify
from gateway.store.records import TERMINAL, AckResult, PlannedDelivery

# The columns of the SQLite deliveries table, in its order: rows read back from either backend
# carry the same keys (the PostgreSQL-only `seq` stays out).
DELIVERY_COLUMNS = (
    "id", "event_id", "chain_id", "chain_seq", "unit_id", "unit_name", "channel", "address", "endpoint_key",
    "text", "payload", "status", "attempts", "max_attempts", "priority", "next_attempt_at", "deadline",
    "lease_token", "lease_until", "worker_id", "last_error", "reason", "provider_ref", "cause_id", "level",
    "event_status", "accepted_at", "created_at", "sent_at", "delivered_at", "finished_at", "followed_up",
)
_D_COLS = ", ".join("d." + c for c in DELIVERY_COLUMNS)

_TERMINAL = [s.value for s in TERMINAL]


async def delivery_row(c: Conn, where: str, arg: str) -> dict[str, Any] | None:
    """`where` is a trusted column name (id or provider_ref), never caller input."""
    r = await c.fetchrow(
        f"SELECT {_D_COLS}, u.required AS ack_required, u.acked_at AS unit_acked_at FROM deliveries d"
        f" LEFT JOIN unit_acks u ON u.event_id=d.event_id AND u.unit_id=d.unit_id WHERE d.{where}=$1",
        arg,
    )
    return as_dict(r) if r is not None else None


async def transition(c: Conn, delivery_id: str, from_statuses: Sequence[str], to_status: str, at: float,
                     reason: str | None, error: str | None, next_at: float | None) -> bool:
    n = affected(await c.execute(
        "UPDATE deliveries SET status=$1::text, reason=COALESCE($2::text, reason),"
        " last_error=COALESCE($3::text, last_error),"
        " delivered_at=CASE WHEN $1::text='delivered' THEN $4::float8 ELSE delivered_at END,"
        " finished_at=CASE WHEN $5::bool THEN $4::float8 ELSE finished_at END,"
        " next_attempt_at=COALESCE($6::float8, next_attempt_at), lease_token=NULL"
        " WHERE id=$7 AND status = ANY($8::text[])",
        to_status, reason, error, at, to_status in _TERMINAL, next_at, delivery_id, list(from_statuses),
    ))
    return n > 0


async def log_receipt(c: Conn, provider_ref: str, status: str, error_code: str | None, at: float,
                      applied: bool) -> None:
    await c.execute("INSERT INTO receipts (provider_ref, status, error_code, at, applied) VALUES ($1,$2,$3,$4,$5)",
                    provider_ref, status, error_code, at, int(applied))


async def record_ack(c: Conn, event_id: str, unit_id: str, delivery_id: str | None, by: str, via: str,
                     at: float) -> AckResult | None:
    row = await c.fetchrow(
        "SELECT u.acked_at, e.level, e.accepted_at, e.status FROM unit_acks u JOIN events e ON e.id=u.event_id"
        " WHERE u.event_id=$1 AND u.unit_id=$2", event_id, unit_id,
    )
    if row is None:
        return None
    # the row lock makes concurrent acks queue up: exactly one sees acked_at IS NULL
    first = affected(await c.execute(
        "UPDATE unit_acks SET acked_at=$1, acked_by=$2, via=$3, delivery_id=$4, next_escalation_at=NULL"
        " WHERE event_id=$5 AND unit_id=$6 AND acked_at IS NULL",
        at, by, via, delivery_id, event_id, unit_id,
    )) > 0
    await c.execute(
        'INSERT INTO ack_log (event_id, unit_id, delivery_id, "by", via, at, first) VALUES ($1,$2,$3,$4,$5,$6,$7)',
        event_id, unit_id, delivery_id, by, via, at, int(first),
    )
    return AckResult(event_id=event_id, unit_id=unit_id, first=first, level=row["level"],
                     accepted_at=float(row["accepted_at"]), event_status=str(row["status"]))


async def link_used(c: Conn, delivery_id: str) -> bool:
    return await c.fetchval("SELECT 1 FROM ack_log WHERE delivery_id=$1 AND via='link' LIMIT 1",
                            delivery_id) is not None


async def open_delivery_for_address(c: Conn, address: str) -> dict[str, Any] | None:
    r = await c.fetchrow(
        "SELECT d.id, d.event_id, d.unit_id FROM deliveries d JOIN unit_acks u"
        " ON u.event_id=d.event_id AND u.unit_id=d.unit_id"
        " WHERE d.address=$1 AND d.channel IN ('sms','voice') AND u.required=1 AND u.acked_at IS NULL"
        " AND d.status NOT IN ('cancelled') ORDER BY d.created_at DESC, d.seq DESC LIMIT 1",
        address,
    )
    return as_dict(r) if r is not None else None


async def add_deliveries(c: Conn, event_id: str, deliveries: Sequence[PlannedDelivery], now: float) -> list[str]:
    # FOR SHARE: a concurrent cancel or supersede updates this row first, so either it waits for
    # us (and cancels what we add) or we see its verdict and add nothing
    ev = await c.fetchrow(
        "SELECT chain_id, chain_seq, level, status, accepted_at, state FROM events WHERE id=$1 FOR SHARE", event_id
    )
    if ev is None or ev["state"] in ("cancelled", "superseded"):
        return []
    added = []
    for d in deliveries:
        # ON CONFLICT on cause_id only: a follow-up already made for this cause is skipped, as
        # on SQLite; any other clash (a reused delivery id) still fails loudly
        new_id = await c.fetchval(
            "INSERT INTO deliveries (id, event_id, chain_id, chain_seq, unit_id, unit_name, channel, address,"
            " endpoint_key, text, payload, status, max_attempts, priority, next_attempt_at, deadline, cause_id,"
            " level, event_status, accepted_at, created_at)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,'pending',$12,$13,$14,$15,$16,$17,$18,$19,$20)"
            " ON CONFLICT (cause_id) WHERE cause_id IS NOT NULL DO NOTHING RETURNING id",
            d.id, event_id, ev["chain_id"], ev["chain_seq"], d.unit_id, d.unit_name, d.channel, d.address,
            d.endpoint_key, d.text, d.payload, d.max_attempts, d.priority, max(now, d.not_before), d.deadline,
            d.cause_id, ev["level"], ev["status"], ev["accepted_at"], now,
        )
        if new_id is not None:
            added.append(d.id)
    if added:
        await notify(c)
    return added


async def stale_sent(c: Conn, before: float, limit: int) -> list[dict[str, Any]]:
    # SKIP LOCKED: two instances following up at once split the rows instead of doubling them
    rows = await c.fetch(
        f"SELECT {_D_COLS} FROM deliveries d WHERE d.status='sent' AND d.followed_up=0 AND d.sent_at<$1"
        " ORDER BY d.sent_at LIMIT $2 FOR UPDATE SKIP LOCKED", before, limit,
    )
    if rows:
        await c.execute("UPDATE deliveries SET followed_up=1 WHERE id = ANY($1::text[])", [r["id"] for r in rows])
    return [as_dict(r) for r in rows]


async def addresses_used(c: Conn, event_id: str, unit_id: str) -> list[str]:
    return [str(r["address"]) for r in await c.fetch(
        "SELECT address FROM deliveries WHERE event_id=$1 AND unit_id=$2 GROUP BY address ORDER BY MIN(seq)",
        event_id, unit_id)]
