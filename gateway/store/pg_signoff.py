"""The `Signoffs` port on PostgreSQL (transaction bodies; the statements are in `signoffs.py`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.store import signoffs as so
from gateway.store.pg_conn import Conn, affected, as_dict
from gateway.store.pg_tx import _LOCK_CHAIN_NS as LOCK_CHAIN_NS
from gateway.store.pg_tx import notify
from gateway.store.records import NewEvent, Released


async def record(c: Conn, event: NewEvent) -> None:
    await c.execute(so.PG["insert"], *so.insert_args(event))


async def get(c: Conn, event_id: str) -> dict[str, Any] | None:
    r = await c.fetchrow(so.PG["get"], event_id)
    return so.row_of(as_dict(r)) if r is not None else None


async def list_(c: Conn, state: str | None, limit: int) -> list[dict[str, Any]]:
    rows = await (c.fetch(so.PG["list_state"], state, limit) if state else c.fetch(so.PG["list"], limit))
    return [so.row_of(as_dict(r)) for r in rows]


async def release(c: Conn, event_id: str, by: str, at: float, ref: str | None, state: str) -> Released | None:
    # the sign-off row first: its row lock makes a concurrent sign, reject or expiry wait, then miss
    if affected(await c.execute(so.PG["sign"], state, by, at, ref, event_id, at)) == 0:
        return None
    row = await c.fetchrow(so.PG["event"], event_id)
    assert row is not None  # the sign-off row references the event
    ev = as_dict(row)
    if ev["supersedes"] is not None:
        # one writer per chain, as in the intake transaction (pg_tx.record_event)
        await c.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_CHAIN_NS, ev["chain_id"])
        await c.execute(so.PG["sup_events"], ev["chain_id"])
        await c.execute(so.PG["sup_deliveries"], f"superseded by {event_id}", at, ev["chain_id"])
        await c.execute(so.PG["sup_acks"], ev["chain_id"])
    new_state = so.final_state(ev["type"])
    await c.execute(so.PG["event_state"], new_state, event_id)
    shift = max(0.0, at - float(ev["accepted_at"]))
    n = affected(await c.execute(so.PG["release"], at, shift, at, at, event_id))
    await c.execute(so.PG["release_acks"], shift, shift, event_id)
    await c.execute(so.PG["status_due"], so.STATUS_STEP, event_id, event_id)
    await notify(c)
    return Released(event_id, n, new_state)


async def reject(c: Conn, event_id: str, by: str, at: float, reason: str, state: str) -> bool:
    if affected(await c.execute(so.PG["decide"], state, by, at, reason, event_id)) == 0:
        return False
    await c.execute(so.PG["event_state"], state, event_id)
    await c.execute(so.PG["cancel_held"], f"sign-off {state} by {by}: {reason}", at, event_id)
    return True


async def expire(c: Conn, now: float) -> list[str]:
    ids = [str(r[0]) for r in await c.fetch(so.PG["expired"] + " FOR UPDATE SKIP LOCKED", now)]
    for event_id in ids:
        await reject(c, event_id, "system", now, "no sign-off before the draft expired", "expired")
    return ids


async def claim_notices(c: Conn, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
    # SKIP LOCKED + the lease: each due notice goes to one instance of the cluster
    rows = [so.row_of(as_dict(r)) for r in await c.fetch(so.PG["due"] + " FOR UPDATE OF s SKIP LOCKED", now, limit)]
    for r in rows:
        await c.execute(so.PG["lease"], now + lease_for, r["event_id"])
    return rows


async def advance(c: Conn, event_id: str, step: int, next_at: float | None, asked: Sequence[str]) -> bool:
    return affected(await c.execute(so.PG["advance"], step + 1, next_at, json.dumps(list(asked)), event_id,
                                    step)) > 0
