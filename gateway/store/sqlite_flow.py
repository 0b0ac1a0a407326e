"""Escalations, public messages and the audit chain on SQLite (transaction bodies)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gateway.store.common import audit_hash


def claim_escalations(c: sqlite3.Connection, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
    rows = c.execute(
        "SELECT u.event_id, u.unit_id, u.unit_name, u.escalation_step, u.deadline, e.escalation, e.level,"
        " e.status, e.state FROM unit_acks u JOIN events e ON e.id=u.event_id"
        " WHERE u.acked_at IS NULL AND u.next_escalation_at IS NOT NULL AND u.next_escalation_at<=?"
        " ORDER BY u.next_escalation_at LIMIT ?", (now, limit),
    ).fetchall()
    # a lease: another worker (or this one after a crash) retries only after lease_for
    c.executemany("UPDATE unit_acks SET next_escalation_at=? WHERE event_id=? AND unit_id=?",
                  [(now + lease_for, r["event_id"], r["unit_id"]) for r in rows])
    return [dict(r) for r in rows]


def advance_escalation(c: sqlite3.Connection, event_id: str, unit_id: str, step: int,
                       next_at: float | None) -> bool:
    return c.execute(
        "UPDATE unit_acks SET escalation_step=?, next_escalation_at=? WHERE event_id=? AND unit_id=?"
        " AND escalation_step=? AND acked_at IS NULL", (step + 1, next_at, event_id, unit_id, step),
    ).rowcount > 0


def unacked_units(c: sqlite3.Connection, event_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in c.execute(
        "SELECT unit_id, unit_name, escalation_step FROM unit_acks WHERE event_id=? AND required=1"
        " AND acked_at IS NULL ORDER BY rowid", (event_id,))]


def append_audit(c: sqlite3.Connection, at: float, principal: str, action: str, subject: str,
                 detail: dict[str, Any]) -> int:
    prev = c.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev_hash = prev[0] if prev else ""
    blob = json.dumps(detail, ensure_ascii=False, sort_keys=True)
    seq = int(c.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0]) + 1
    h = audit_hash(seq, at, principal, action, subject, blob, prev_hash)
    c.execute("INSERT INTO audit (seq, at, principal, action, subject, detail, prev_hash, hash)"
              " VALUES (?,?,?,?,?,?,?,?)", (seq, at, principal, action, subject, blob, prev_hash, h))
    return seq


def list_audit(c: sqlite3.Connection, after: int, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in c.execute(
        "SELECT * FROM audit WHERE seq>? ORDER BY seq LIMIT ?", (after, limit))]


def insert_public(c: sqlite3.Connection, row: dict[str, Any]) -> None:
    c.execute(
        "INSERT INTO public_messages (id, event_id, text, channels, requester, state, created_at, expires_at)"
        " VALUES (:id, :event_id, :text, :channels, :requester, :state, :created_at, :expires_at)",
        {**row, "channels": json.dumps(row["channels"])},
    )


def get_public(c: sqlite3.Connection, pm_id: str) -> dict[str, Any] | None:
    r = c.execute("SELECT * FROM public_messages WHERE id=?", (pm_id,)).fetchone()
    if r is None:
        return None
    out = dict(r)
    out["channels"] = json.loads(out["channels"])
    return out


def list_public(c: sqlite3.Connection, state: str | None, limit: int) -> list[dict[str, Any]]:
    where = "WHERE state=?" if state else ""
    args: tuple[Any, ...] = (state, limit) if state else (limit,)
    out = []
    for r in c.execute(f"SELECT * FROM public_messages {where} ORDER BY created_at DESC LIMIT ?", args):
        row = dict(r)
        row["channels"] = json.loads(row["channels"])
        out.append(row)
    return out


def decide_public(c: sqlite3.Connection, pm_id: str, to_state: str, by: str | None, reason: str | None,
                  at: float, dispatch_event_id: str | None) -> bool:
    return c.execute(
        "UPDATE public_messages SET state=?, approver=COALESCE(?, approver), reason=?, decided_at=?,"
        " dispatch_event_id=? WHERE id=? AND state='pending_approval'",
        (to_state, by, reason, at, dispatch_event_id, pm_id),
    ).rowcount > 0


def expire_public(c: sqlite3.Connection, now: float) -> list[str]:
    ids = [r[0] for r in c.execute(
        "SELECT id FROM public_messages WHERE state='pending_approval' AND expires_at<?", (now,))]
    c.executemany("UPDATE public_messages SET state='expired', decided_at=? WHERE id=?", [(now, i) for i in ids])
    return ids
