"""The `FollowUps` port: deliveries added after intake (fallbacks, escalations, reminders).

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

from gateway.store.ports import Store
from tests.store.helpers import T0, ack, dl, ev


async def test_add_deliveries_dedupes_by_cause_and_orders_after_the_event(store: Store) -> None:
    await store.record_event(ev(), [dl("d1")], [ack()])
    added = await store.add_deliveries("e1", [dl("f1", cause_id="d1", not_before=T0 + 30),
                                              dl("f2", cause_id="d1"), dl("f3", "u1", channel="voice")], now=T0 + 10)
    assert added == ["f1", "f3"]
    assert await store.add_deliveries("e1", [dl("f4", cause_id="d1")], now=T0 + 11) == []
    f1 = await store.delivery(delivery_id="f1") or {}
    assert (f1["next_attempt_at"], f1["created_at"], f1["chain_id"], f1["level"]) == (T0 + 30, T0 + 10, "e1", "red")
    assert sorted(await store.addresses_used("e1", "u1")) == sorted(
        {"http://127.0.0.1:9/u1/d1", "http://127.0.0.1:9/u1/f1", "http://127.0.0.1:9/u1/f3"})
