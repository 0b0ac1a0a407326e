"""The `Signoffs` port's statements for SQLite (`?`) and PostgreSQL (`$n`), and its SQLite
transaction bodies (PostgreSQL's are in `pg_signoff.py`).

A draft is an event in state `pending_signoff` whose deliveries are `held` (no claim takes
them), with one `signoffs` row. Signing flips all of that in one transaction; the chain is
superseded only then, so an unsigned upgrade never cancels the warning in force.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.events import ENDING_TYPES, EventType
from gateway.store.common import ts
from gateway.store.records import NewEvent, Released

_SQL = {
    "insert": "INSERT INTO signoffs (event_id, level, submitter, state, created_at, expires_at, next_notify_at,"
              " asked, decided_by, decided_at, notice_step)"
              " VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10})",
    "sign": "UPDATE signoffs SET state={0}, decided_by={1}, decided_at={2}, ref={3}, next_notify_at=NULL"
            " WHERE event_id={4} AND state='pending' AND expires_at>={5}",
    "event": "SELECT type, chain_id, supersedes, accepted_at FROM events WHERE id={0}",
    # the chain's earlier events, as `supersede` in the intake transaction does it
    "sup_events": "UPDATE events SET state='superseded' WHERE chain_id={0} AND state IN ('active','ended')",
    "sup_deliveries": "UPDATE deliveries SET status='cancelled', reason='superseded', last_error={0},"
                      " finished_at={1}, lease_token=NULL WHERE chain_id={2} AND status='pending'",
    "sup_acks": "UPDATE unit_acks SET next_escalation_at=NULL WHERE event_id IN"
                " (SELECT id FROM events WHERE chain_id={0})",
    "event_state": "UPDATE events SET state={0} WHERE id={1}",
    # released rows count from the signature: due now, deadline and latency measured from it
    "release": "UPDATE deliveries SET status='pending', next_attempt_at={0}, deadline=deadline+{1},"
               " accepted_at={2}, created_at={3} WHERE event_id={4} AND status='held'",
    "release_acks": "UPDATE unit_acks SET deadline=deadline+{0},"
                    " next_escalation_at=CASE WHEN required=1 THEN deadline+{1} ELSE NULL END WHERE event_id={2}",
    # after release the row waits for the status report due at the first ack deadline
    "status_due": "UPDATE signoffs SET notice_step={0}, next_notify_at=(SELECT MIN(deadline) FROM unit_acks"
                  " WHERE event_id={1} AND required=1) WHERE event_id={2}",
    "decide": "UPDATE signoffs SET state={0}, decided_by={1}, decided_at={2}, reason={3}, next_notify_at=NULL"
              " WHERE event_id={4} AND state='pending'",
    "cancel_held": "UPDATE deliveries SET status='cancelled', reason='cancelled', last_error={0}, finished_at={1}"
                   " WHERE event_id={2} AND status='held'",
    # a cancelled draft is no longer waiting for anybody
    "cancel": "UPDATE signoffs SET state='cancelled', decided_by={0}, decided_at={1}, next_notify_at=NULL"
              " WHERE event_id={2} AND state='pending'",
    "expired": "SELECT event_id FROM signoffs WHERE state='pending' AND expires_at<{0}",
    "due": "SELECT s.*, e.type, e.status FROM signoffs s JOIN events e ON e.id=s.event_id"
           " WHERE s.state IN ('pending','signed','released')"
           " AND s.next_notify_at IS NOT NULL AND s.next_notify_at<={0} ORDER BY s.next_notify_at LIMIT {1}",
    "lease": "UPDATE signoffs SET next_notify_at={0} WHERE event_id={1}",
    "advance": "UPDATE signoffs SET notice_step={0}, next_notify_at={1}, asked={2}"
               " WHERE event_id={3} AND notice_step={4} AND state IN ('pending','signed','released')",
    "get": "SELECT * FROM signoffs WHERE event_id={0}",
    "list": "SELECT * FROM signoffs ORDER BY created_at DESC LIMIT {0}",
    "list_state": "SELECT * FROM signoffs WHERE state={0} ORDER BY created_at DESC LIMIT {1}",
}
SQLITE = {k: v.format(*["?"] * 11) for k, v in _SQL.items()}
PG = {k: v.format(*[f"${i}" for i in range(1, 12)]) for k, v in _SQL.items()}


def is_held(event: NewEvent) -> bool:
    """The event waits for its sign-off (its deliveries `held`), rather than being released by
    its source at intake (`state: released`, recorded all the same)."""
    return event.signoff is not None and event.signoff.get("state", "pending") == "pending"


STATUS_STEP = 100  # the notice step of a released warning: its status report after the ack window


def final_state(event_type: str) -> str:
    """The state a signed event takes: a lift ends its chain."""
    return "ended" if EventType(event_type) in ENDING_TYPES else "active"


def insert_args(event: NewEvent) -> tuple[Any, ...]:
    s = event.signoff or {}
    state = s.get("state", "pending")
    released = state != "pending"
    # a released warning's notices start at its status report (`next_notify_at`: the first ack deadline)
    return (event.id, s.get("level", event.level), s.get("submitter", event.principal), state, event.accepted_at,
            float(s.get("expires_at", event.accepted_at)), s.get("next_notify_at"),
            json.dumps(list(s.get("asked", ()))), s.get("decided_by") if released else None,
            event.accepted_at if released else None, STATUS_STEP if released else 0)


def row_of(r: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(r)
    if isinstance(out.get("asked"), str):
        out["asked"] = json.loads(out["asked"])
    return out


def view(r: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The sign-off as the API shows it on the event."""
    if r is None:
        return None
    row = row_of(r)
    return {"state": row["state"], "level": row["level"], "submitter": row["submitter"], "asked": row["asked"],
            "decided_by": row["decided_by"], "decided_at": ts(row["decided_at"]), "ref": row["ref"],
            "reason": row["reason"], "created_at": ts(row["created_at"]), "expires_at": ts(row["expires_at"]),
            "notice_step": row["notice_step"]}


# ---- SQLite bodies (run in the store's thread, one transaction each)

def sqlite_record(c: sqlite3.Connection, event: NewEvent) -> None:
    c.execute(SQLITE["insert"], insert_args(event))


def sqlite_get(c: sqlite3.Connection, event_id: str) -> dict[str, Any] | None:
    r = c.execute(SQLITE["get"], (event_id,)).fetchone()
    return row_of(r) if r is not None else None


def sqlite_list(c: sqlite3.Connection, state: str | None, limit: int) -> list[dict[str, Any]]:
    rows = (c.execute(SQLITE["list_state"], (state, limit)) if state else c.execute(SQLITE["list"], (limit,)))
    return [row_of(r) for r in rows]


def sqlite_release(c: sqlite3.Connection, event_id: str, by: str, at: float, ref: str | None,
                   state: str) -> Released | None:
    if c.execute(SQLITE["sign"], (state, by, at, ref, event_id, at)).rowcount == 0:
        return None
    ev = c.execute(SQLITE["event"], (event_id,)).fetchone()
    if ev["supersedes"] is not None:
        c.execute(SQLITE["sup_events"], (ev["chain_id"],))
        c.execute(SQLITE["sup_deliveries"], (f"superseded by {event_id}", at, ev["chain_id"]))
        c.execute(SQLITE["sup_acks"], (ev["chain_id"],))
    new_state = final_state(ev["type"])
    c.execute(SQLITE["event_state"], (new_state, event_id))
    shift = max(0.0, at - ev["accepted_at"])
    n = c.execute(SQLITE["release"], (at, shift, at, at, event_id)).rowcount
    c.execute(SQLITE["release_acks"], (shift, shift, event_id))
    c.execute(SQLITE["status_due"], (STATUS_STEP, event_id, event_id))
    return Released(event_id, int(n), new_state)


def sqlite_reject(c: sqlite3.Connection, event_id: str, by: str, at: float, reason: str, state: str) -> bool:
    if c.execute(SQLITE["decide"], (state, by, at, reason, event_id)).rowcount == 0:
        return False
    c.execute(SQLITE["event_state"], (state, event_id))
    c.execute(SQLITE["cancel_held"], (f"sign-off {state} by {by}: {reason}", at, event_id))
    return True


def sqlite_expire(c: sqlite3.Connection, now: float) -> list[str]:
    ids = [str(r[0]) for r in c.execute(SQLITE["expired"], (now,))]
    for event_id in ids:
        sqlite_reject(c, event_id, "system", now, "no sign-off before the draft expired", "expired")
    return ids


def sqlite_claim_notices(c: sqlite3.Connection, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
    rows = [row_of(r) for r in c.execute(SQLITE["due"], (now, limit))]
    c.executemany(SQLITE["lease"], [(now + lease_for, r["event_id"]) for r in rows])
    return rows


def sqlite_advance(c: sqlite3.Connection, event_id: str, step: int, next_at: float | None,
                   asked: Sequence[str]) -> bool:
    return c.execute(SQLITE["advance"], (step + 1, next_at, json.dumps(list(asked)), event_id, step)).rowcount > 0
