"""The `Outbox` port: intake records work in one transaction, the dispatcher leases and settles it.

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.ports import Store
from gateway.store.postgres import PostgresStore
from gateway.store.records import (
    Claim,
    Duplicate,
    Outcome,
    OutcomeKind,
    UnknownEvent,
)
from tests.store.helpers import T0, W, ack, claim, dl, ev, status_of
from tests.support.pg import run_sync, truncate


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


async def test_concurrent_intake_of_one_id_records_it_once(store: Store, second: Store) -> None:
    results = await asyncio.gather(*(s.record_event(ev("same"), [dl(f"d-{i}")], [ack()])
                                     for i, s in enumerate((store, second))), return_exceptions=True)
    assert sum(r == [] for r in results) == 1, results
    dup = next(r for r in results if r != [])
    assert isinstance(dup, Duplicate) and dup.same_body and dup.event_id == "same"
    assert (await store.get_event("same"))["summary"]["deliveries"] == 1


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


async def test_claim_by_priority_band(store: Store) -> None:
    await store.record_event(ev(), [dl("red", "u1", priority=0), dl("yel", "u2", priority=2),
                                     dl("drill", "u3", priority=12)], [])
    urgent = await claim(store, max_priority=0)
    assert set(urgent) == {"red"} and urgent["red"].priority == 0
    rest = await claim(store, min_priority=1, max_priority=5)
    assert set(rest) == {"yel"}
    assert set(await claim(store, min_priority=1)) == {"drill"}


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


async def test_a_hand_off_never_overtakes_its_units_earlier_delivery_still_in_flight(store: Store) -> None:
    await store.record_event(ev("first"), [dl("f-u1", "u1"), dl("f-u2", "u2")], [])
    assert set(await claim(store, limit=1)) == {"f-u1"}  # u1's first delivery is in flight
    got = await store.record_event(ev("second", supersedes="first", at=T0 + 1), [dl("s-u1", "u1"), dl("s-u2", "u2")],
                                   [], claim=Claim(now=T0 + 1, limit=5, lease_for=30, worker_id=W))
    assert [i.id for i in got] == ["s-u2"]  # u1 waits until "f-u1" is finished
    assert await status_of(store, "s-u1") == ("pending", None, 0)
    assert await status_of(store, "f-u2") == ("cancelled", "superseded", 0)


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
