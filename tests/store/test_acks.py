"""The `Acks` port: the first ack of a unit counts, replies find their delivery.

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

from gateway.store.ports import Store
from tests.store.helpers import T0, ack, dl, ev


async def test_record_ack_first_wins_and_open_delivery_for_address(store: Store) -> None:
    phone = "+8613800000009"
    await store.record_event(ev("old"), [dl("o1", channel="sms", address=phone, key="sms")], [ack()])
    await store.record_event(ev("new", at=T0 + 5), [dl("n1", channel="voice", address=phone, key="voice")],
                             [ack(), ack("u2", required=False)])
    await store.add_deliveries("new", [dl("n2", channel="sms", address=phone, key="sms")], now=T0 + 6)
    assert await store.open_delivery_for_address(phone) == {"id": "n2", "event_id": "new", "unit_id": "u1"}
    assert await store.open_delivery_for_address("+8613800000000") is None
    first = await store.record_ack(event_id="new", unit_id="u1", delivery_id="n1", by="+86...", via="link", at=T0 + 7)
    assert first is not None and first.first and first.level == "red" and first.accepted_at == T0 + 5
    assert first.event_status == "actual"
    again = await store.record_ack(event_id="new", unit_id="u1", delivery_id=None, by="x", via="sms", at=T0 + 8)
    assert again is not None and not again.first
    assert await store.record_ack(event_id="new", unit_id="ghost", delivery_id=None, by="x", via="sms", at=T0) is None
    assert await store.link_used("n1") and not await store.link_used("o1")
    assert await store.open_delivery_for_address(phone) == {"id": "o1", "event_id": "old", "unit_id": "u1"}
    body = await store.get_event("new")
    assert body["units"][0]["acked_by"] == "+86..." and body["units"][0]["via"] == "link"
    assert await store.unacked_units("new") == [] and await store.unacked_units("old") == [
        {"unit_id": "u1", "unit_name": "单位 u1", "escalation_step": 0}]
    assert (await store.delivery(delivery_id="n1") or {})["unit_acked_at"] == T0 + 7
