"""The `Receipts` port: finding a delivery by provider reference, compare-and-set, silence.

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

from gateway.store.ports import Store
from gateway.store.records import (
    Outcome,
    OutcomeKind,
)
from tests.store.helpers import T0, ack, claim, dl, ev


async def test_receipts_transition_and_stale_sent(store: Store) -> None:
    await store.record_event(ev(), [dl("s1", channel="sms", address="+8613800000001", key="sms"),
                                    dl("s2", "u2", channel="sms", address="+8613800000002", key="sms")], [ack()])
    it = await claim(store)
    await store.finish([Outcome(i.id, i.lease_token, OutcomeKind.SENT, T0 + 1, provider_ref=f"SM{i.id}")
                        for i in it.values()])
    row = await store.delivery(provider_ref="SMs1")
    assert row is not None and row["id"] == "s1" and row["ack_required"] == 1 and row["unit_acked_at"] is None
    assert await store.delivery() is None and await store.delivery(provider_ref="nope") is None
    assert await store.transition("s1", from_statuses=["sent"], to_status="delivered", at=T0 + 2)
    assert not await store.transition("s1", from_statuses=["sent"], to_status="failed", at=T0 + 3)
    row = await store.delivery(delivery_id="s1") or {}
    assert (row["status"], row["delivered_at"], row["finished_at"]) == ("delivered", T0 + 2, T0 + 2)
    await store.log_receipt("SMs1", "delivered", None, T0 + 2, True)
    stale = await store.stale_sent(before=T0 + 10, limit=10)
    assert [r["id"] for r in stale] == ["s2"] and stale[0]["followed_up"] == 0 and stale[0]["provider_ref"] == "SMs2"
    assert await store.stale_sent(before=T0 + 10, limit=10) == []
    assert await store.transition("s2", from_statuses=["sent", "leased"], to_status="pending", at=T0 + 11,
                                  reason="no_receipt", error="silence", next_at=T0 + 12)
    row = await store.delivery(delivery_id="s2") or {}
    assert (row["status"], row["reason"], row["last_error"], row["next_attempt_at"], row["finished_at"]) == (
        "pending", "no_receipt", "silence", T0 + 12, None)
