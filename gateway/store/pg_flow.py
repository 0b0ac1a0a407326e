"""Escalations, public messages and the audit chain on PostgreSQL (transaction bodies)."""

from __future__ import annotations

import json
from typing import Any

from gateway.store.common import audit_hash
from gateway.store.pg_conn import LOCK_AUDIT, Conn, affected, as_dict


async def claim_escalations(c: Conn, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
    # SKIP LOCKED + the lease below: each due unit goes to exactly one instance of the cluster,
    # and to another one only after lease_for if that one died before advancing it
    rows = await c.fetch(
        "SELECT u.event_id, u.unit_id, u.unit_name, u.escalation_step, u.deadline, e.escalation, e.level,"
        " e.status, e.state FROM unit_acks u JOIN events e ON e.id=u.event_id"
        " WHERE u.acked_at IS NULL AND u.next_escalation_at IS NOT NULL AND u.next_escalation_at<=$1"
        " ORDER BY u.next_escalation_at LIMIT $2 FOR UPDATE OF u SKIP LOCKED", now, limit,
    )
    if rows:
        await c.execute(
            "UPDATE unit_acks u SET next_escalation_at=$1 FROM unnest($2::text[], $3::text[]) AS k(event_id, unit_id)"
            " WHERE u.event_id=k.event_id AND u.unit_id=k.unit_id",
            now + lease_for, [r["event_id"] for r in rows], [r["unit_id"] for r in rows],
        )
    return [as_dict(r) for r in rows]


async def advance_escalation(c: Conn, event_id: str, unit_id: str, step: int, next_at: float | None) -> bool:
    return affected(await c.execute(
        "UPDATE unit_acks SET escalation_step=$1, next_escalation_at=$2 WHERE event_id=$3 AND unit_id=$4"
        " AND escalation_step=$5 AND acked_at IS NULL", step + 1, next_at, event_id, unit_id, step,
    )) > 0


async def unacked_units(c: Conn, event_id: str) -> list[dict[str, Any]]:
    return [as_dict(r) for r in await c.fetch(
        "SELECT unit_id, unit_name, escalation_step FROM unit_acks WHERE event_id=$1 AND required=1"
        " AND acked_at IS NULL ORDER BY seq", event_id)]


async def append_audit(c: Conn, at: float, principal: str, action: str, subject: str, detail: dict[str, Any]) -> int:
    # one appender at a time across every instance, or two records would link to the same
    # predecessor and fork the chain; the lock is released at commit
    await c.execute("SELECT pg_advisory_xact_lock($1)", LOCK_AUDIT)
    prev = await c.fetchrow("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
    prev_hash = str(prev["hash"]) if prev is not None else ""
    seq = int(prev["seq"]) + 1 if prev is not None else 1
    blob = json.dumps(detail, ensure_ascii=False, sort_keys=True)
    h = audit_hash(seq, at, principal, action, subject, blob, prev_hash)
    await c.execute("INSERT INTO audit (seq, at, principal, action, subject, detail, prev_hash, hash)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8)", seq, at, principal, action, subject, blob, prev_hash, h)
    return seq


async def list_audit(c: Conn, after: int, limit: int) -> list[dict[str, Any]]:
    return [as_dict(r) for r in await c.fetch(
        "SELECT seq, at, principal, action, subject, detail, prev_hash, hash FROM audit WHERE seq>$1"
        " ORDER BY seq LIMIT $2", after, limit)]


async def insert_public(c: Conn, row: dict[str, Any]) -> None:
    await c.execute(
        "INSERT INTO public_messages (id, event_id, text, channels, requester, state, created_at, expires_at)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        row["id"], row["event_id"], row["text"], json.dumps(row["channels"]), row["requester"], row["state"],
        row["created_at"], row["expires_at"],
    )


async def get_public(c: Conn, pm_id: str) -> dict[str, Any] | None:
    r = await c.fetchrow("SELECT * FROM public_messages WHERE id=$1", pm_id)
    if r is None:
        return None
    out = as_dict(r)
    out["channels"] = json.loads(out["channels"])
    return out


async def decide_public(c: Conn, pm_id: str, to_state: str, by: str | None, reason: str | None, at: float,
                        dispatch_event_id: str | None) -> bool:
    return affected(await c.execute(
        "UPDATE public_messages SET state=$1, approver=COALESCE($2, approver), reason=$3, decided_at=$4,"
        " dispatch_event_id=$5 WHERE id=$6 AND state='pending_approval'",
        to_state, by, reason, at, dispatch_event_id, pm_id,
    )) > 0


async def list_public(c: Conn, state: str | None, limit: int) -> list[dict[str, Any]]:
    if state:
        rows = await c.fetch("SELECT * FROM public_messages WHERE state=$1 ORDER BY created_at DESC LIMIT $2",
                             state, limit)
    else:
        rows = await c.fetch("SELECT * FROM public_messages ORDER BY created_at DESC LIMIT $1", limit)
    out = []
    for r in rows:
        row = as_dict(r)
        row["channels"] = json.loads(row["channels"]) if isinstance(row["channels"], str) else row["channels"]
        out.append(row)
    return out


async def expire_public(c: Conn, now: float) -> list[str]:
    return [str(r["id"]) for r in await c.fetch(
        "UPDATE public_messages SET state='expired', decided_at=$1 WHERE state='pending_approval' AND expires_at<$1"
        " RETURNING id", now)]
