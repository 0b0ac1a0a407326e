"""Builders shared by the store conformance suite (one file per port under tests/store/)."""

from __future__ import annotations

from typing import Any

from gateway.store.ports import Store
from gateway.store.postgres import PostgresStore
from gateway.store.records import NewEvent, Outcome, OutcomeKind, PlannedAck, PlannedDelivery
from gateway.store.sqlite import SqliteStore

T0 = 1_800_000_000.0
W = "worker-a"


def make_store(url: str) -> Store:
    return SqliteStore(url.removeprefix("sqlite:///")) if url.startswith("sqlite:") else PostgresStore(url)


def ev(eid: str = "e1", *, supersedes: str | None = None, kind: str = "warning.issued", at: float = T0,
       body: str = "b", escalation: tuple[dict[str, Any], ...] = (), audit: dict[str, Any] | None = None
       ) -> NewEvent:
    return NewEvent(
        id=eid, body_hash=f"hash-{body}", data={"headline": f"标题 {eid}", "area": "泽州"}, type=kind,
        level="red", status="actual", supersedes=supersedes, source="api", principal="writer", accepted_at=at,
        valid_until=None, answer={"event_id": eid, "body": body}, roster_version="r1", policy_version="p1",
        escalation=escalation, audit=audit,
    )


def dl(did: str, unit: str = "u1", *, channel: str = "webhook", address: str | None = None, priority: int = 5,
       max_attempts: int = 3, deadline: float = T0 + 3600, cause_id: str | None = None, not_before: float = 0.0,
       key: str | None = None) -> PlannedDelivery:
    addr = address or f"http://127.0.0.1:9/{unit}/{did}"
    return PlannedDelivery(
        id=did, unit_id=unit, unit_name=f"单位 {unit}", channel=channel, address=addr,
        endpoint_key=key or f"{channel}:{unit}", text="文本", payload='{"k": 1}', max_attempts=max_attempts,
        priority=priority, deadline=deadline, cause_id=cause_id, not_before=not_before,
    )


def ack(unit: str = "u1", *, required: bool = True, deadline: float | None = T0 + 600) -> PlannedAck:
    return PlannedAck(unit_id=unit, unit_name=f"单位 {unit}", required=required, deadline=deadline)


async def claim(s: Store, now: float = T0, limit: int = 100, lease_for: float = 30.0, **kw: Any) -> dict[str, Any]:
    return {i.id: i for i in await s.claim_due(now=now, limit=limit, lease_for=lease_for, worker_id=W, **kw)}


async def status_of(s: Store, did: str) -> tuple[str, str | None, int]:
    row = await s.delivery(delivery_id=did)
    assert row is not None
    return row["status"], row["reason"], row["attempts"]


ESC = ({"after": "10m", "to": "leader"},)


async def scenario(s: Store) -> dict[str, Any]:
    """A bit of everything; the answers (minus random lease tokens) must match across backends."""
    await s.record_event(ev("o1", escalation=ESC, audit={"名": "泽州", "f": 0.3}),
                         [dl("a"), dl("b", "u2"), dl("c", "u3", channel="sms", key="sms")],
                         [ack(), ack("u2"), ack("u3", required=False, deadline=None)])
    it = await claim(s, limit=2, exclude=["sms"])
    await s.finish([Outcome("a", it["a"].lease_token, OutcomeKind.DELIVERED, T0 + 1, provider_ref="r-a"),
                    Outcome("b", it["b"].lease_token, OutcomeKind.RETRY, T0 + 1, next_at=T0 + 5, error="503",
                            reason="server_error")])
    await s.record_ack(event_id="o1", unit_id="u1", delivery_id="a", by="u1", via="link", at=T0 + 2)
    await s.add_deliveries("o1", [dl("f", "u2", channel="voice", key="voice", cause_id="b")], now=T0 + 3)
    await s.record_event(ev("r1", supersedes="o1", kind="warning.upgraded", at=T0 + 4), [dl("r", "u2")], [ack("u2")])
    await s.record_event(ev("n1", kind="notice", at=T0 + 6, body="n"), [dl("n", "u4")], [])
    await s.cancel_event("n1", at=T0 + 7, by="ops")
    for i in range(3):
        await s.append_audit(at=T0 + i / 3, principal="p", action="event_accepted", subject="o1",
                             detail={"n": i, "名": "泽州", "f": 0.1})
    rows = {k: await s.delivery(delivery_id=k) for k in ("a", "b", "c", "f", "r", "n")}
    for r in rows.values():
        assert r is not None
        r.pop("lease_token")
    return {
        "o1": await s.get_event("o1"), "r1": await s.get_event("r1"), "n1": await s.get_event("n1"),
        "list": await s.list_events(status=None, limit=10), "listed": await s.list_events(status="superseded", limit=1),
        "rows": rows, "escalations": await s.claim_escalations(now=T0 + 10_000, limit=10, lease_for=5),
        "audit": await s.list_audit(after=0, limit=10), "stats": await s.outbox_stats(T0 + 100),
        "due": await s.next_due_at(), "unacked": await s.unacked_units("r1"),
    }
