"""One conformance suite for every store backend: each test runs on SQLite and PostgreSQL.

PostgreSQL runs in a throwaway database created for the session (emptied before each test);
those cases skip, saying why, only when no server answers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.migrate import verify_chain
from gateway.store.base import (
    Claim,
    Duplicate,
    NewEvent,
    Outcome,
    OutcomeKind,
    PlannedAck,
    PlannedDelivery,
    Store,
    StoreError,
    UnknownEvent,
)
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.support.pg import run_sync, throwaway_database, truncate

T0 = 1_800_000_000.0
W = "worker-a"



@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with throwaway_database() as (_, url):
        yield url


def make_store(url: str) -> Store:
    return SqliteStore(url.removeprefix("sqlite:///")) if url.startswith("sqlite:") else PostgresStore(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gw.db'}"
    url: str = request.getfixturevalue("pg_url")
    run_sync(lambda: truncate(url))
    return url


@pytest.fixture
async def store(backend: str) -> AsyncIterator[Store]:
    s = make_store(backend)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def second(backend: str, store: Store) -> AsyncIterator[Store]:
    """Another instance on the same database (another pool, or another SQLite connection)."""
    s = make_store(backend)
    await s.open()
    yield s
    await s.close()


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


# ---- intake
async def test_record_event_duplicates_and_unknown_supersedes(store: Store) -> None:
    await store.record_event(ev(), [dl("d1"), dl("d2", "u2")], [ack(), ack("u2", required=False)])
    with pytest.raises(Duplicate) as same:
        await store.record_event(ev(), [dl("x1")], [])
    assert same.value.same_body and same.value.answer == {"event_id": "e1", "body": "b"}
    with pytest.raises(Duplicate) as other:
        await store.record_event(ev(body="changed"), [], [])
    assert not other.value.same_body and other.value.event_id == "e1"
    with pytest.raises(UnknownEvent):
        await store.record_event(ev("e2", supersedes="nope", kind="warning.upgraded", audit={"n": 1}), [dl("d3")],
                                 [])
    assert await store.list_audit(after=0, limit=10) == []  # rolled back with the event
    with pytest.raises(UnknownEvent):
        await store.get_event("e2")  # the failed intake left nothing behind
    assert await store.delivery(delivery_id="x1") is None and await store.delivery(delivery_id="d3") is None
    body = await store.get_event("e1")
    assert body["summary"]["deliveries"] == 2 and body["summary"]["unacked_units"] == ["u1"]
    assert [d["id"] for d in body["deliveries"]] == ["d1", "d2"] and body["state"] == "active"


async def test_intake_writes_its_audit_record_in_the_same_transaction(store: Store, second: Store) -> None:
    await asyncio.gather(*(s.record_event(ev(f"e{i}", at=T0 + i, audit={"deliveries": 1, "i": i}), [dl(f"d{i}")], [])
                           for i in range(10) for s in [(store, second)[i % 2]]))
    await store.append_audit(at=T0 + 20, principal="admin", action="event_cancelled", subject="e1", detail={})
    rows = await store.list_audit(after=0, limit=20)
    assert verify_chain(rows) == [] and len(rows) == 11
    first = next(r for r in rows if r["subject"] == "e3")
    assert (first["action"], first["principal"], first["at"]) == ("event_accepted", "writer", T0 + 3)
    assert first["detail"] == '{"deliveries": 1, "i": 3}'


async def test_concurrent_intake_of_one_id_records_it_once(store: Store, second: Store) -> None:
    results = await asyncio.gather(*(s.record_event(ev("same"), [dl(f"d-{i}")], [ack()])
                                     for i, s in enumerate((store, second))), return_exceptions=True)
    assert sum(r == [] for r in results) == 1, results
    dup = next(r for r in results if r != [])
    assert isinstance(dup, Duplicate) and dup.same_body and dup.event_id == "same"
    assert (await store.get_event("same"))["summary"]["deliveries"] == 1


# ---- claiming
async def test_claim_counts_attempts_and_honours_limit_exclude_priority_not_before(store: Store) -> None:
    await store.record_event(ev(), [
        dl("low", "u1", priority=9), dl("high", "u2", priority=1), dl("mid", "u3", priority=5),
        dl("skip", "u4", priority=0, key="webhook:busy"), dl("later", "u5", priority=0, not_before=T0 + 60),
    ], [])
    assert await store.claim_due(now=T0, limit=0, lease_for=30, worker_id=W) == []
    first = await claim(store, limit=1, exclude=["webhook:busy"], lease_for=600)
    assert list(first) == ["high"]
    item = first["high"]
    assert item.attempts == 1 and item.lease_token and item.status == "actual" and item.level == "red"
    assert item.payload == '{"k": 1}' and item.accepted_at == T0 and item.deadline == T0 + 3600
    assert set(await claim(store, limit=5, exclude=["webhook:busy"], lease_for=600)) == {"mid", "low"}
    assert set(await claim(store, lease_for=600)) == {"skip"}
    assert await store.next_due_at() == T0 + 60  # "later"; the leases run to T0 + 600
    assert set(await claim(store, now=T0 + 60)) == {"later"}


async def test_record_event_hands_off_leased_deliveries_of_that_event_only(store: Store) -> None:
    await store.record_event(ev("old"), [dl("old-u3", "u3")], [])
    got = await store.record_event(ev("new", at=T0 + 1), [
        dl("n-low", "u1", priority=9), dl("n-high", "u2", priority=1), dl("n-busy", "u4", key="webhook:busy"),
        dl("n-later", "u5", not_before=T0 + 60), dl("n-mid", "u6", priority=5),
    ], [], claim=Claim(now=T0 + 1, limit=2, lease_for=30, worker_id=W, exclude=("webhook:busy",)))
    assert [i.id for i in got] == ["n-high", "n-mid"]  # most urgent first, limit, exclude, not-before
    assert all(i.attempts == 1 and i.lease_token and i.event_id == "new" for i in got)
    assert await status_of(store, "n-high") == ("leased", None, 1)
    # the rest stay for the dispatcher's normal claims; the older event is never handed off
    assert set(await claim(store, now=T0 + 2)) == {"old-u3", "n-low", "n-busy"}
    no_room = await store.record_event(ev("e3", at=T0 + 2), [dl("e3-u1", "u7")], [],
                                       claim=Claim(now=T0 + 2, limit=0, lease_for=30, worker_id=W))
    assert no_room == [] and await status_of(store, "e3-u1") == ("pending", None, 0)


async def test_defer_endpoint_moves_only_that_endpoints_queued_rows(store: Store) -> None:
    await store.record_event(ev(), [dl("dead-1", "u1", key="webhook:dead"), dl("dead-2", "u2", key="webhook:dead"),
                                    dl("dead-late", "u3", key="webhook:dead", not_before=T0 + 100),
                                    dl("live", "u4", key="webhook:live")], [])
    held = await claim(store, limit=1, exclude=["webhook:live"])  # dead-1 in flight: not moved
    assert list(held) == ["dead-1"]
    assert await store.defer_endpoint("webhook:dead", T0 + 30) == 1  # dead-2; dead-late is later
    assert set(await claim(store, now=T0 + 1)) == {"live"}  # dead-2 is not due any more
    assert await status_of(store, "dead-2") == ("pending", None, 0)  # no attempt spent
    assert set(await claim(store, now=T0 + 30)) == {"dead-2"}


async def test_chain_order_waits_for_the_earlier_leased_message(store: Store) -> None:
    await store.record_event(ev("o1"), [dl("o-u1", "u1"), dl("o-u2", "u2")], [ack()])
    held = await claim(store, limit=1)
    assert list(held) == ["o-u1"]
    await store.record_event(ev("r1", supersedes="o1", kind="warning.upgraded", at=T0 + 1),
                             [dl("r-u1", "u1"), dl("r-u2", "u2")], [])
    assert await status_of(store, "o-u2") == ("cancelled", "superseded", 0)  # pending: cancelled
    assert (await store.get_event("o1"))["state"] == "superseded"
    assert set(await claim(store, now=T0 + 2)) == {"r-u2"}  # u1 still has the orange one in flight
    o = held["o-u1"]
    assert await store.finish([Outcome(o.id, o.lease_token, OutcomeKind.DELIVERED, T0 + 3)]) == []
    assert set(await claim(store, now=T0 + 3)) == {"r-u1"}
    assert (await store.get_event("r1"))["chain_id"] == "o1"


async def test_expired_lease_is_reclaimed_and_the_old_token_is_lost(store: Store) -> None:
    await store.record_event(ev(), [dl("d1")], [])
    old = (await claim(store, lease_for=10))["d1"]
    assert await claim(store, now=T0 + 5) == {}
    new = (await claim(store, now=T0 + 11))["d1"]
    assert new.attempts == 2 and new.lease_token != old.lease_token
    assert await store.finish([Outcome("d1", old.lease_token, OutcomeKind.DELIVERED, T0 + 12)]) == ["d1"]
    assert await store.finish([Outcome("d1", new.lease_token, OutcomeKind.DELIVERED, T0 + 12)]) == []
    assert await status_of(store, "d1") == ("delivered", None, 2)


async def test_lease_lost_on_the_final_attempt_fails_and_deadline_expires(store: Store) -> None:
    await store.record_event(ev(), [dl("last", max_attempts=1), dl("late", "u2", deadline=T0 + 5,
                                                                    not_before=T0 + 1)], [])
    assert set(await claim(store, lease_for=10)) == {"last"}
    assert await claim(store, now=T0 + 11) == {}
    row = await store.delivery(delivery_id="last")
    assert row is not None and row["status"] == "failed" and row["reason"] == "other"
    assert row["last_error"] == "lease expired during the final attempt (worker lost)" and row["finished_at"] == T0 + 11
    late = await store.delivery(delivery_id="late")
    assert late is not None and (late["status"], late["reason"]) == ("expired", "expired")
    assert late["last_error"] == "deadline passed before delivery"


# ---- outcomes
async def test_finish_applies_every_kind_in_one_batch(store: Store) -> None:
    await store.record_event(ev(), [dl(f"d{i}", f"u{i}") for i in range(6)], [])
    it = await claim(store)
    tok = {k: v.lease_token for k, v in it.items()}
    lost = await store.finish([
        Outcome("d0", tok["d0"], OutcomeKind.DELIVERED, T0 + 1, provider_ref="ref-0"),
        Outcome("d1", tok["d1"], OutcomeKind.SENT, T0 + 1, provider_ref="ref-1"),
        Outcome("d2", tok["d2"], OutcomeKind.RETRY, T0 + 1, next_at=T0 + 9, error="503", reason="server_error"),
        Outcome("d3", tok["d3"], OutcomeKind.FAILED, T0 + 1, error="400", reason="client_error"),
        Outcome("d4", tok["d4"], OutcomeKind.RELEASE, T0 + 1, next_at=T0 + 2, error="paused", reason="auth"),
        Outcome("d5", "stale", OutcomeKind.DELIVERED, T0 + 1),
        Outcome("d0", tok["d0"], OutcomeKind.FAILED, T0 + 1, error="again"),  # a repeat: lost
    ])
    assert lost == ["d5", "d0"]
    rows = {f"d{i}": await store.delivery(delivery_id=f"d{i}") for i in range(6)}
    d0, d1, d2, d3, d4 = (rows[f"d{i}"] or {} for i in range(5))
    assert (d0["status"], d0["provider_ref"], d0["delivered_at"], d0["sent_at"]) == ("delivered", "ref-0", T0 + 1,
                                                                                     T0 + 1)
    assert (d1["status"], d1["provider_ref"], d1["sent_at"], d1["finished_at"]) == ("sent", "ref-1", T0 + 1, None)
    assert (d2["status"], d2["next_attempt_at"], d2["last_error"], d2["reason"]) == ("pending", T0 + 9, "503",
                                                                                     "server_error")
    assert (d3["status"], d3["reason"], d3["last_error"], d3["finished_at"]) == ("failed", "client_error", "400",
                                                                                 T0 + 1)
    assert (d4["status"], d4["attempts"], d4["next_attempt_at"]) == ("pending", 0, T0 + 2)  # attempt refunded
    assert all(r is not None and r["lease_token"] is None for k, r in rows.items() if k != "d5")
    assert (await store.delivery(provider_ref="ref-1") or {}).get("id") == "d1"


async def test_in_flight_retries_of_cancelled_and_superseded_events_are_cancelled(store: Store) -> None:
    await store.record_event(ev("a"), [dl("a1"), dl("a2", "u2")], [ack()])
    await store.record_event(ev("b"), [dl("b1", "u3")], [])
    it = await claim(store, limit=2, exclude=["webhook:u3"])
    assert await store.cancel_event("a", at=T0 + 1, by="admin") == 2  # both were leased
    b1 = (await claim(store))["b1"]
    await store.record_event(ev("c", supersedes="b", kind="warning.upgraded", at=T0 + 2), [dl("c1", "u4")], [])
    assert await store.finish([
        Outcome("a1", it["a1"].lease_token, OutcomeKind.RETRY, T0 + 3, next_at=T0 + 4, error="boom",
                reason="timeout"),
        Outcome("a2", it["a2"].lease_token, OutcomeKind.DELIVERED, T0 + 3),
        Outcome("b1", b1.lease_token, OutcomeKind.RELEASE, T0 + 3, next_at=T0 + 3),
    ]) == []
    a1 = await store.delivery(delivery_id="a1") or {}
    assert (a1["status"], a1["reason"], a1["last_error"]) == ("cancelled", "cancelled",
                                                              "cancelled while in flight; boom")
    assert await status_of(store, "a2") == ("delivered", None, 1)  # a send that made it stays made
    b = await store.delivery(delivery_id="b1") or {}
    assert (b["status"], b["reason"], b["last_error"]) == ("cancelled", "superseded", "superseded while in flight; ")
    assert (await store.get_event("a"))["state"] == "cancelled"
    assert await store.claim_escalations(now=T0 + 10_000, limit=10, lease_for=5) == []
    assert await store.cancel_event("a", at=T0 + 5, by="admin") == 0
    with pytest.raises(UnknownEvent):
        await store.cancel_event("missing", at=T0, by="admin")


async def test_cancel_counts_pending_and_refuses_follow_ups(store: Store) -> None:
    await store.record_event(ev(), [dl("d1"), dl("d2", "u2")], [ack()])
    assert await store.cancel_event("e1", at=T0 + 1, by="ops") == 2
    row = await store.delivery(delivery_id="d1") or {}
    assert (row["status"], row["reason"], row["last_error"], row["finished_at"]) == (
        "cancelled", "cancelled", "cancelled by ops", T0 + 1)
    assert await store.add_deliveries("e1", [dl("f1", cause_id="d1")], now=T0 + 2) == []
    assert await store.add_deliveries("nope", [dl("f2")], now=T0 + 2) == []
    assert await claim(store, now=T0 + 5) == {}


# ---- receipts, acks, fallbacks
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


# ---- escalation
ESC = ({"after": "10m", "to": "leader"},)


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


# ---- audit chain
async def test_audit_chain_appends_in_order_even_concurrently(store: Store, second: Store) -> None:
    seqs = await asyncio.gather(*(s.append_audit(at=T0 + i, principal="p", action="a", subject=f"s{i}",
                                                 detail={"i": i}) for i in range(30) for s in (store, second)))
    assert sorted(seqs) == list(range(1, 61))
    rows = await store.list_audit(after=0, limit=100)
    assert [r["seq"] for r in rows] == list(range(1, 61))
    assert verify_chain(rows) == []  # links, and every hash recomputed from the record's content
    assert [r["seq"] for r in await store.list_audit(after=58, limit=10)] == [59, 60]


# ---- public messages
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


# ---- observability and lifecycle
async def test_outbox_stats_and_next_due(store: Store) -> None:
    assert await store.next_due_at() is None
    assert await store.outbox_stats(T0) == type(await store.outbox_stats(T0))()
    await store.record_event(ev(), [dl("w1"), dl("w2", "u2"), dl("s1", channel="sms", key="sms")], [])
    await store.record_event(ev("e2", at=T0 + 20), [dl("w3", "u3")], [])
    it = await claim(store, now=T0 + 20, exclude=["webhook:u2", "webhook:u3"])
    await store.finish([Outcome("s1", it["s1"].lease_token, OutcomeKind.SENT, T0 + 21, provider_ref="x"),
                        Outcome("w1", it["w1"].lease_token, OutcomeKind.DELIVERED, T0 + 21)])
    stats = await store.outbox_stats(T0 + 50)
    assert dict(stats.depth) == {"webhook": 2, "sms": 1}
    assert dict(stats.oldest_pending) == {"webhook": 50.0, "sms": 0.0}
    assert await store.next_due_at() == T0


async def test_ping_answers_while_open(backend: str) -> None:
    s = make_store(backend)
    await s.open()
    assert await s.ping()
    await s.close()


async def test_get_and_list_events_look_the_same_on_both_backends(tmp_path: Path, pg_url: str) -> None:
    run_sync(lambda: truncate(pg_url))
    outputs = []
    for url in (f"sqlite:///{tmp_path / 'gw.db'}", pg_url):
        s = make_store(url)
        await s.open()
        try:
            outputs.append(await _scenario(s))
        finally:
            await s.close()
    lite, pg = outputs
    for key in lite:
        assert lite[key] == pg[key], key


async def _scenario(s: Store) -> dict[str, Any]:
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


# ---- PostgreSQL only: what a cluster adds
async def test_pg_two_pools_never_claim_the_same_delivery(pg_url: str) -> None:
    run_sync(lambda: truncate(pg_url))
    stores = [PostgresStore(pg_url, pool_min=1, pool_max=4) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        await stores[0].record_event(ev(), [dl(f"d{i}", f"u{i % 40}") for i in range(2000)], [])

        async def worker(s: Store) -> list[str]:
            got: list[str] = []
            while batch := await s.claim_due(now=T0, limit=25, lease_for=60, worker_id=W):
                got += [i.id for i in batch]
            return got

        results = await asyncio.gather(*(worker(s) for s in stores for _ in range(3)))
        claimed = [i for r in results for i in r]
        assert len(claimed) == len(set(claimed)) == 2000
        assert all(len(r) > 0 for r in results[::3])  # both instances got work
    finally:
        for s in stores:
            await s.close()


async def test_pg_notify_wakes_a_waiting_instance_and_migrations_are_idempotent(pg_url: str) -> None:
    run_sync(lambda: truncate(pg_url))
    waiter, writer = PostgresStore(pg_url), PostgresStore(pg_url, migrate=False)
    await waiter.open()  # migrates a fresh session database, so the second one finds it current
    await writer.open()
    try:
        await waiter.wait_for_work(0.01)  # connects the listener (and reports what it may have missed)
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = asyncio.create_task(waiter.wait_for_work(10.0))
        await asyncio.sleep(0.2)
        await writer.record_event(ev(), [dl("d1")], [])
        await asyncio.wait_for(task, 5)
        assert loop.time() - started < 2.0
        assert await waiter.migrate() == []  # already current: nothing re-applied
    finally:
        await asyncio.gather(waiter.close(), writer.close())


async def test_pg_refuses_an_unmigrated_database_when_migration_is_off() -> None:
    with throwaway_database("gw_test_empty") as (_, url):
        store = PostgresStore(url, migrate=False, connect_for=2)
        with pytest.raises(StoreError, match="gateway migrate"):
            await store.open()
        opened = [PostgresStore(url) for _ in range(3)]
        await asyncio.gather(*(s.open() for s in opened))  # three instances racing to migrate
        await asyncio.gather(*(s.close() for s in opened))
        await store.open()
        await store.close()



async def test_claim_by_priority_band(store: Store) -> None:
    await store.record_event(ev(), [dl("red", "u1", priority=0), dl("yel", "u2", priority=2),
                                     dl("drill", "u3", priority=12)], [])
    urgent = await claim(store, max_priority=0)
    assert set(urgent) == {"red"} and urgent["red"].priority == 0
    rest = await claim(store, min_priority=1, max_priority=5)
    assert set(rest) == {"yel"}
    assert set(await claim(store, min_priority=1)) == {"drill"}
