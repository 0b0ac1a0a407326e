"""The `Audit` port: one hash chain, appended in order, intake records included.

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio

from gateway.migrate import verify_chain
from gateway.store.ports import Store
from tests.store.helpers import T0, dl, ev


async def test_intake_writes_its_audit_record_in_the_same_transaction(store: Store, second: Store) -> None:
    await asyncio.gather(*(s.record_event(ev(f"e{i}", at=T0 + i, audit={"deliveries": 1, "i": i}), [dl(f"d{i}")], [])
                           for i in range(10) for s in [(store, second)[i % 2]]))
    await store.append_audit(at=T0 + 20, principal="admin", action="event_cancelled", subject="e1", detail={})
    rows = await store.list_audit(after=0, limit=20)
    assert verify_chain(rows) == [] and len(rows) == 11
    first = next(r for r in rows if r["subject"] == "e3")
    assert (first["action"], first["principal"], first["at"]) == ("event_accepted", "writer", T0 + 3)
    assert first["detail"] == '{"deliveries": 1, "i": 3}'


async def test_audit_chain_appends_in_order_even_concurrently(store: Store, second: Store) -> None:
    seqs = await asyncio.gather(*(s.append_audit(at=T0 + i, principal="p", action="a", subject=f"s{i}",
                                                 detail={"i": i}) for i in range(30) for s in (store, second)))
    assert sorted(seqs) == list(range(1, 61))
    rows = await store.list_audit(after=0, limit=100)
    assert [r["seq"] for r in rows] == list(range(1, 61))
    assert verify_chain(rows) == []  # links, and every hash recomputed from the record's content
    assert [r["seq"] for r in await store.list_audit(after=58, limit=10)] == [59, 60]
