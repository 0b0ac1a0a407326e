"""The `Escalations` port: exactly once across instances.

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio

from gateway.store.ports import Store
from tests.store.helpers import ESC, T0, ack, dl, ev


async def test_escalation_claim_is_a_lease_and_advance_is_compare_and_set(store: Store, second: Store) -> None:
    await store.record_event(ev(escalation=ESC), [dl("d1")], [ack(f"u{i}") for i in range(20)] +
                             [ack("optional", required=False)])
    assert await store.claim_escalations(now=T0 + 599, limit=50, lease_for=30) == []
    claims = await asyncio.gather(*(s.claim_escalations(now=T0 + 601, limit=50, lease_for=30)
                                    for s in (store, second, store, second)))
    units = [r["unit_id"] for rows in claims for r in rows]
    assert sorted(units) == sorted(f"u{i}" for i in range(20))  # each unit to exactly one claimer
    row = next(r for rows in claims for r in rows)
    assert set(row) == {"event_id", "unit_id", "unit_name", "escalation_step", "deadline", "escalation", "level",
                        "status", "state"}
    assert (row["escalation_step"], row["deadline"], row["state"]) == (0, T0 + 600, "active")
    assert row["escalation"] == '[{"after": "10m", "to": "leader"}]'
    assert await store.claim_escalations(now=T0 + 620, limit=50, lease_for=30) == []  # leased
    moves = await asyncio.gather(*(s.advance_escalation("e1", "u0", step=0, next_at=T0 + 900) for s in (store, second)))
    assert sorted(moves) == [False, True]
    again = await store.claim_escalations(now=T0 + 632, limit=50, lease_for=30)  # leases ran out
    assert sorted(r["unit_id"] for r in again) == sorted(f"u{i}" for i in range(1, 20))
    steps = {r["unit_id"]: r["escalation_step"] for r in await store.claim_escalations(now=T0 + 901, limit=50,
                                                                                        lease_for=30)}
    assert steps["u0"] == 1 and len(steps) == 20
    await store.record_ack(event_id="e1", unit_id="u1", delivery_id=None, by="x", via="sms", at=T0 + 950)
    assert not await store.advance_escalation("e1", "u1", step=0, next_at=None)  # acked: nothing to move
