"""The `PublicMessages` port: the two-person rule is compare-and-set; expiry.

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio

from gateway.store.ports import Store
from tests.store.helpers import T0, ev


async def test_public_messages_compare_and_set_and_expiry(store: Store) -> None:
    await store.record_event(ev(), [], [])
    base = {"event_id": "e1", "text": "公众信息", "channels": ["sms", "webhook"], "requester": "media",
            "state": "pending_approval", "created_at": T0}
    await store.insert_public({**base, "id": "pm1", "expires_at": T0 + 100})
    await store.insert_public({**base, "id": "pm2", "expires_at": T0 + 10})
    pm = await store.get_public("pm1")
    assert pm is not None and pm["channels"] == ["sms", "webhook"] and pm["approver"] is None
    assert await store.get_public("nope") is None
    listed = await store.list_public(state="pending_approval", limit=10)
    assert {p["id"] for p in listed} == {"pm1", "pm2"} and listed[0]["channels"] == ["sms", "webhook"]
    assert await store.expire_public(now=T0 + 11) == ["pm2"]
    assert [p["id"] for p in await store.list_public(state="expired", limit=10)] == ["pm2"]
    assert len(await store.list_public(state=None, limit=1)) == 1
    assert not await store.decide_public("pm2", to_state="approved", by="leader", reason=None, at=T0 + 12)
    results = await asyncio.gather(
        store.decide_public("pm1", to_state="approved", by="leader", reason=None, at=T0 + 12, dispatch_event_id="e9"),
        store.decide_public("pm1", to_state="rejected", by="leader2", reason="no", at=T0 + 12))
    assert sorted(results) == [False, True]
    pm = await store.get_public("pm1") or {}
    assert pm["state"] in ("approved", "rejected") and pm["decided_at"] == T0 + 12
    assert await store.expire_public(now=T0 + 1000) == []
