"""The dispatcher in-process on a real SQLite store and the real webhook channel against a local
receiver: the intake hand-off (first deliveries leased in the intake's own transaction), the
quiet queue (no store round trip per completion once drained), and the retry schedule."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from channels.webhook import WebhookChannel
from gateway.dispatcher import URGENT, ChannelSlot, Dispatcher
from gateway.metrics import Metrics
from gateway.retry import Backoff
from gateway.store.base import NewEvent, OutboxItem, PlannedDelivery
from gateway.store.sqlite import SqliteStore
from tests.conftest import WEBHOOK_SECRET
from tests.support.receiver import Receiver


class CountingStore(SqliteStore):
    """The real SQLite store, counting the dispatcher's claims."""

    claims = 0

    async def claim_due(
        self, *, now: float, limit: int, lease_for: float, worker_id: str, exclude: Sequence[str] = (),
        min_priority: int | None = None, max_priority: int | None = None,
    ) -> list[OutboxItem]:
        self.claims += 1
        return await super().claim_due(now=now, limit=limit, lease_for=lease_for, worker_id=worker_id,
                                       exclude=exclude, min_priority=min_priority, max_priority=max_priority)


def event(eid: str) -> NewEvent:
    return NewEvent(
        id=eid, body_hash="h", data={"headline": "橙色预警"}, type="warning.issued", level="orange",
        status="actual", supersedes=None, source="api", principal="writer", accepted_at=time.time(),
        valid_until=None, answer={"event_id": eid}, roster_version="r", policy_version="p",
    )


def deliveries(eid: str, base: str, n: int, priority: int = 2, path: str = "",
               key: str | None = None) -> list[PlannedDelivery]:
    return [PlannedDelivery(
        id=f"{eid}-{i}", unit_id=f"u{i}", unit_name=f"单位{i}", channel="webhook",
        address=f"{base}/hook/u{i}{path}",
        endpoint_key=key or f"webhook:{base}", text="文本", payload='{"k": 1}', max_attempts=3, priority=priority,
        deadline=time.time() + 600) for i in range(n)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    s = CountingStore(tmp_path / "outbox.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def channel() -> AsyncIterator[WebhookChannel]:
    ch = WebhookChannel(WEBHOOK_SECRET, per_endpoint_concurrency=64)
    try:
        yield ch
    finally:
        await ch.aclose()


def dispatcher(store: SqliteStore, channel: WebhookChannel, concurrency: int = 64) -> Dispatcher:
    slot = ChannelSlot(channel, per_endpoint=64, timeout=5.0)
    return Dispatcher(store, {"webhook": slot}, Metrics(), concurrency=concurrency)


async def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def statuses(store: SqliteStore, eid: str) -> Sequence[str]:
    return [d["status"] for d in (await store.get_event(eid))["deliveries"]]


async def test_handed_off_deliveries_are_sent_without_any_claim(
        store: CountingStore, channel: WebhookChannel, receiver: Receiver) -> None:
    d = dispatcher(store, channel)
    claim = d.handoff(priority=2)
    assert claim is not None and claim.limit == 64 - 8  # 8 slots stay reserved for red warnings
    leased = await store.record_event(event("e1"), deliveries("e1", receiver.base_url, 40), [], claim=claim)
    assert len(leased) == 40
    d.adopt(claim, leased)
    # the dispatcher's loop is not even running: the hand-off alone sends
    await wait_until(lambda: _count(receiver, 40))
    assert store.claims == 0
    runner = asyncio.create_task(d.run())  # only to record the outcomes
    await wait_until(lambda: _all(store, "e1", "delivered"))
    await d.stop(1.0)
    await runner


async def test_held_slots_are_not_claimed_twice_and_red_keeps_its_reserve(
        store: CountingStore, channel: WebhookChannel) -> None:
    d = dispatcher(store, channel, concurrency=8)
    low = d.handoff(priority=2)
    assert low is not None and low.limit == 7
    assert d.handoff(priority=2) is None  # every low-priority slot is promised
    red = d.handoff(priority=URGENT)
    assert red is not None and red.limit == 1  # the reserve is for red warnings only
    assert d.handoff(priority=URGENT) is None
    d.adopt(low, [])
    d.adopt(red, [])
    again = d.handoff(priority=URGENT)
    assert again is not None and again.limit == 8  # given back, nothing leaked


async def test_drained_queue_costs_no_claim_per_completion(
        store: CountingStore, channel: WebhookChannel, receiver: Receiver) -> None:
    d = dispatcher(store, channel)
    runner = asyncio.create_task(d.run())
    await wait_until(lambda: _claims_settled(store))
    before = store.claims
    # 20 deliveries claimed at once, answered one by one over about 0.6 s
    for i in range(20):
        receiver.slow(f"/hook/u{i}/", 0.03 * (i + 1))
    await store.record_event(event("e2"), deliveries("e2", receiver.base_url, 20, path="/x"), [])
    d.wake()
    await wait_until(lambda: _all(store, "e2", "delivered"))
    used = store.claims - before
    await d.stop(1.0)
    await runner
    # the wake-up's claim (two queries: red first, then the rest) and at most one once-a-second
    # poll; when every completion cost a claim this was over 20
    assert used <= 6, used


async def test_new_work_after_quiet_is_claimed_at_once(
        store: CountingStore, channel: WebhookChannel, receiver: Receiver) -> None:
    d = dispatcher(store, channel)
    runner = asyncio.create_task(d.run())
    await store.record_event(event("e3"), deliveries("e3", receiver.base_url, 5), [])
    d.wake()
    await wait_until(lambda: _all(store, "e3", "delivered"))
    await store.record_event(event("e4"), deliveries("e4", receiver.base_url, 5), [])
    t0 = time.monotonic()
    d.wake()
    await wait_until(lambda: _all(store, "e4", "delivered"))
    assert time.monotonic() - t0 < 0.9  # not left for the once-a-second poll
    await d.stop(1.0)
    await runner


async def test_a_claim_holds_its_slots_while_it_is_out(store: CountingStore, channel: WebhookChannel) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class SlowClaims(CountingStore):
        async def claim_due(self, **kw: Any) -> list[OutboxItem]:
            entered.set()
            await gate.wait()
            return []

    slow = SlowClaims(store.path)
    await slow.open()
    try:
        d = dispatcher(slow, channel, concurrency=8)
        claiming = asyncio.create_task(d._claim_once())
        await entered.wait()
        # while the claim is at the store, an intake hand-off finds every slot promised;
        # without the hold both would take all 8 and overshoot the concurrency
        assert d.handoff(priority=URGENT) is None
        gate.set()
        await claiming
        again = d.handoff(priority=URGENT)
        assert again is not None and again.limit == 8
        d.adopt(again, [])
    finally:
        await slow.close()


async def test_a_dead_endpoints_queue_is_moved_behind_its_cooldown_and_not_polled(
        tmp_path: Path, receiver: Receiver) -> None:
    store = CountingStore(tmp_path / "dead.db")
    await store.open()
    with socket.socket() as s:  # bound and released: connections are refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    channel = WebhookChannel(WEBHOOK_SECRET, per_endpoint_concurrency=8, breaker_threshold=1,
                             breaker_cooldown=3.0)
    d = dispatcher(store, channel, concurrency=8)
    runner = asyncio.create_task(d.run())
    try:
        await store.record_event(event("e5"), deliveries("e5", dead, 300), [])
        d.wake()

        async def moved() -> bool:
            now = time.time()
            due = await store._run(lambda c: c.execute(
                "SELECT COUNT(*) FROM deliveries WHERE status='pending' AND next_attempt_at<=?",
                (now,)).fetchone()[0])
            return bool(due == 0)

        # the queued rows are due no sooner than the circuit's reopening: claims skip them
        # by index instead of scanning past every one (fails without the dispatcher's sync)
        await wait_until(moved, timeout=5.0)
        before = store.claims
        await asyncio.sleep(1.0)
        # and while the endpoint is deferred the dispatcher waits, it does not poll every 50 ms
        assert store.claims - before <= 3, store.claims - before
        row = await store.delivery(delivery_id="e5-299")
        assert row is not None and row["attempts"] == 0  # never tried: nothing spent
    finally:
        await d.stop(1.0)
        await runner
        await channel.aclose()
        await store.close()


async def test_a_paused_channels_due_work_is_waited_for_not_polled(
        store: CountingStore, channel: WebhookChannel, receiver: Receiver) -> None:
    d = dispatcher(store, channel)
    # as after a Misconfigured (bad credentials): the channel is paused, its work stays due
    # (keyed by the channel's name, as SMS and voice deliveries are)
    d.channels["webhook"].paused_until = time.time() + 1.5
    await store.record_event(event("e6"), deliveries("e6", receiver.base_url, 20, key="webhook"), [])
    runner = asyncio.create_task(d.run())
    try:
        await asyncio.sleep(1.0)
        # the excluded rows end their wait at a known time: no claim every 50 ms meanwhile
        assert store.claims <= 3, store.claims
        await wait_until(lambda: _all(store, "e6", "delivered"))  # and they go once it ends
    finally:
        await d.stop(1.0)
        await runner


def test_default_backoff_retries_a_blip_fast_and_an_outage_patiently() -> None:
    b = Backoff()
    for attempt, low in ((1, 0.2), (2, 0.6), (3, 1.8), (4, 5.4)):
        for _ in range(50):
            assert low <= b.delay(attempt) <= low + 0.2
    horizon = sum(Backoff(jitter=0).delay(n) for n in range(1, 8))  # the 7 waits of 8 attempts
    assert 200 < horizon < 240
    capped = Backoff(initial=1.0, base=2.0, maximum=5.0, jitter=0)
    assert [capped.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.received) >= n


async def _all(store: SqliteStore, eid: str, status: str) -> bool:
    return all(s == status for s in await statuses(store, eid))


async def _claims_settled(store: CountingStore) -> bool:
    return store.claims >= 1
