"""The dispatcher: claims due deliveries with a lease (or takes them from the intake's
hand-off), runs each as one attempt (`gateway.attempts`), and records every outcome in
batches. Retries are rows (`next_attempt_at`), never sleeps.

Concurrency is bounded globally and per endpoint key, so one slow or dead receiver holds at
most its own share of slots and never delays the rest of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from channels.base import FailureReason
from gateway.attempts import Attempts, ChannelSlot, FailureHook, MetaBuilder
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.retry import Backoff
from gateway.store.base import Claim, OutboxItem, Outcome, OutcomeKind, Store

__all__ = ["URGENT", "ChannelSlot", "Dispatcher", "worker_name"]

log = get_logger("gateway.dispatcher")

URGENT = 0  # delivery priority of actual red warnings (policy `priority`; drills add 10)
FIRST_AT_ONCE = 4  # sends of a batch started at once; the rest after their bodies are out (`_start`)


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Dispatcher:
    def __init__(
        self,
        store: Store,
        channels: dict[str, ChannelSlot],
        metrics: Metrics,
        *,
        backoff: Backoff | None = None,
        concurrency: int = 64,
        lease_for: float = 60.0,
        clock: Callable[[], float] = time.time,
        meta: MetaBuilder | None = None,
        on_failed: FailureHook | None = None,
        on_finished: Callable[[], None] | None = None,
    ):
        self.store = store
        self.channels = channels
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.concurrency = concurrency
        self._batch = max(1, concurrency // 4)
        self._reserve = max(1, concurrency // 8) if concurrency > 1 else 0
        self._low_inflight = 0
        self._held = 0  # slots promised to hand-offs whose transaction has not returned yet
        self._kick = False
        self._quiet_until = 0.0  # nothing due before this, unless woken (see `_quiet`)
        self.lease_for = lease_for
        self.clock = clock
        self._deferred: dict[str, float] = {}  # endpoint key -> not claimed before (open circuit)
        self._deferred_synced: dict[str, float] = {}  # endpoint key -> when its rows were last moved
        self.attempts = Attempts(channels, metrics, self.backoff, clock=clock, record=self._record,
                                 defer=self._defer, meta=meta or (lambda item: {}), on_failed=on_failed)
        self.on_finished = on_finished
        self.worker_id = worker_name()
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: dict[asyncio.Task[None], OutboxItem] = {}
        self._by_key: dict[str, int] = {}
        self._outcomes: asyncio.Queue[Outcome] = asyncio.Queue()

    # ---- control
    def wake(self) -> None:
        """New work was committed: claim now, even while nearly full (it may be urgent)."""
        self._kick = True
        self._quiet_until = 0.0
        self._wake.set()

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    def handoff(self, priority: int) -> Claim | None:
        """Slots for a new event's first deliveries, to lease in the transaction that records
        them (the store's `record_event(claim=...)`); None when there is no room. Every Claim
        returned must be given back to `adopt`, with the items leased or with none."""
        if self._stopping:
            return None
        free = self.concurrency - len(self._tasks) - self._held
        if priority > URGENT:
            free = min(free, self.concurrency - self._reserve - self._low_inflight - self._held)
        if free <= 0:
            return None
        self._held += free
        now = self.clock()
        return Claim(now=now, limit=free, lease_for=self.lease_for, worker_id=self.worker_id,
                     exclude=self._excluded(now))

    def adopt(self, claim: Claim, items: list[OutboxItem]) -> None:
        """Start sending what a hand-off leased, and free the slots it held."""
        self._held -= claim.limit
        if items:
            self._start(items, self.clock())

    def channel_up(self, name: str) -> bool:
        slot = self.channels.get(name)
        return slot is not None and slot.paused_until <= self.clock()

    def resume(self, name: str) -> None:
        """Lift a pause (after a config reload fixed credentials)."""
        slot = self.channels.get(name)
        if slot is not None:
            slot.paused_until = 0.0
            slot.reason = ""
            self.metrics.channel_up.labels(name).set(1)
        self.wake()

    async def run(self) -> None:
        """Claim and send until stopped."""
        flusher = asyncio.create_task(self._flush_loop(), name="outcome-flusher")
        try:
            while not self._stopping:
                try:
                    if self._tasks and self.concurrency - len(self._tasks) - self._held < self._batch \
                            and not self._kick:
                        # nearly full: let completions free a batch of slots before the next
                        # claim, so claims are few and large instead of one per completed send
                        await self._wait_wake(1.0)
                        continue
                    now = self.clock()
                    if now < self._quiet_until:
                        # the last claim drained the queue and nothing was added since: a
                        # completion frees a slot but creates no work, so no store round trip
                        await self._wait(self._quiet_until - now)
                        continue
                    self._kick = False
                    claimed, drained = await self._claim_once()
                    if claimed and len(self._tasks) + self._held < self.concurrency:
                        continue
                    if drained:
                        await self._quiet()
                    else:
                        await self._idle()
                except Exception:
                    # the store is down beyond its own retries: keep the loop alive, try again
                    log.exception("dispatch_round_failed")
                    await asyncio.sleep(1.0)
        finally:
            # stop() bounds this wait: it cancels what outlives the grace period
            while self._tasks:
                await asyncio.wait(list(self._tasks))
            await self._outcomes.put(Outcome("", "", OutcomeKind.RELEASE, 0.0))  # flusher sentinel
            await flusher

    async def stop(self, grace: float) -> None:
        """Stop claiming; let in-flight sends finish up to `grace` seconds; release the rest."""
        self._stopping = True
        self.wake()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            now = self.clock()
            for t in pending:
                item = self._tasks.get(t)
                t.cancel()
                if item is not None:
                    # it may or may not have reached the provider: keep the attempt, retry now
                    self._outcomes.put_nowait(Outcome(item.id, item.lease_token, OutcomeKind.RETRY, now,
                                                      next_at=now, error="interrupted by shutdown",
                                                      reason=FailureReason.OTHER.value))
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    # ---- claiming
    def _excluded(self, now: float) -> list[str]:
        out = [k for k, n in self._by_key.items() if n >= self._limit_for(k)]
        out += [name for name, s in self.channels.items() if s.paused_until > now]
        if self._deferred:
            for key, until in list(self._deferred.items()):
                if until > now:
                    out.append(key)
                else:
                    del self._deferred[key]
                    self._deferred_synced.pop(key, None)
        return out

    def _defer(self, key: str, until: float, why: str) -> None:
        """Claim nothing for `key` before `until` (its channel refused to try: open circuit)."""
        known = self._deferred.get(key, 0.0)
        if until <= known:
            return
        if known <= self.clock():
            log.warning("endpoint_deferred", endpoint=key, until=round(until, 3), detail=why)
        self._deferred[key] = until

    async def _sync_deferred(self, now: float) -> None:
        """Move the queued rows of deferred endpoints to the end of their deferral, at most once
        a second per endpoint: they are due but cannot go, and each claim would otherwise scan
        past all of them (100,000 behind a dead receiver: 20 ms a claim instead of 1)."""
        for key, until in list(self._deferred.items()):
            if until <= now + 1.0 or now - self._deferred_synced.get(key, 0.0) < 1.0:
                continue
            self._deferred_synced[key] = now
            try:
                await self.store.defer_endpoint(key, until)
            except Exception:  # only an optimisation: the exclusion already holds them back
                log.exception("endpoint_defer_not_recorded", endpoint=key)

    def _limit_for(self, key: str) -> int:
        slot = self.channels.get(key.split(":", 1)[0])
        return slot.per_endpoint if slot else 1

    async def _claim_once(self) -> tuple[bool, bool]:
        """Claim for the free slots; (filled them all, the queue had nothing more for us)."""
        free = self.concurrency - len(self._tasks) - self._held
        if free <= 0:
            return False, False
        now = self.clock()
        exclude = self._excluded(now)
        if self._deferred:
            await self._sync_deferred(now)
        # a few slots stay reserved for urgent work (an actual red warning): however much lower
        # priority work is queued or slow, the first red delivery leaves at once
        low_free = min(free, self.concurrency - self._reserve - self._low_inflight - self._held)
        # held while the claim is out, so an intake hand-off meanwhile cannot promise them too
        self._held += free
        try:
            items, drained = await self._claim_for(now, free, low_free, exclude)
        finally:
            self._held -= free
        self._start(items, now)
        return len(items) > 0 and len(items) == free, drained

    async def _claim_for(self, now: float, free: int, low_free: int, exclude: list[str]
                         ) -> tuple[list[OutboxItem], bool]:
        drained = not exclude  # with endpoints excluded (busy, paused) a completion may free work
        if low_free >= free:
            items = await self.store.claim_due(now=now, limit=free, lease_for=self.lease_for,
                                               worker_id=self.worker_id, exclude=exclude)
            drained = drained and len(items) < free
        else:
            items = await self.store.claim_due(now=now, limit=free, lease_for=self.lease_for,
                                               worker_id=self.worker_id, exclude=exclude, max_priority=URGENT)
            low_limit = min(free - len(items), low_free)
            low: list[OutboxItem] = []
            if low_limit > 0:
                low = await self.store.claim_due(
                    now=now, limit=low_limit, lease_for=self.lease_for,
                    worker_id=self.worker_id, exclude=exclude, min_priority=URGENT + 1)
            # lower-priority work held back by the reserve is still queued: not drained
            drained = drained and len(items) < free and len(low) < low_limit
            items += low
        return items, drained

    def _start(self, items: list[OutboxItem], now: float) -> None:
        overflow: list[Outcome] = []
        started = 0
        for item in items:
            if item.channel not in self.channels:
                self._outcomes.put_nowait(Outcome(item.id, item.lease_token, OutcomeKind.FAILED, now,
                                                  error=f"channel {item.channel} is not configured",
                                                  reason=FailureReason.OTHER.value))
                continue
            if self._by_key.get(item.endpoint_key, 0) >= self._limit_for(item.endpoint_key):
                overflow.append(Outcome(item.id, item.lease_token, OutcomeKind.RELEASE, now, next_at=now))
                continue
            self._by_key[item.endpoint_key] = self._by_key.get(item.endpoint_key, 0) + 1
            if item.priority > URGENT:
                self._low_inflight += 1
            if started < FIRST_AT_ONCE:
                task = asyncio.create_task(self.attempts.send(item))
            else:
                task = asyncio.create_task(self._send_after_first(item))
            started += 1
            self._tasks[task] = item
            task.add_done_callback(self._done)
        for o in overflow:
            self._outcomes.put_nowait(o)

    async def _send_after_first(self, item: OutboxItem) -> None:
        # aiohttp (on Python 3.11) writes a request's body in a task of its own, queued behind
        # every send started in the same batch: without this yield the first request of 40
        # reached the socket only after all 40 had been prepared (202 -> first arrival ~6 ms)
        await asyncio.sleep(0)
        await self.attempts.send(item)

    def _done(self, task: asyncio.Task[None]) -> None:
        item = self._tasks.pop(task, None)
        if item is not None:
            if item.priority > URGENT:
                self._low_inflight -= 1
            n = self._by_key.get(item.endpoint_key, 1) - 1
            if n <= 0:
                self._by_key.pop(item.endpoint_key, None)
            else:
                self._by_key[item.endpoint_key] = n
        self._wake.set()

    async def _quiet(self) -> None:
        """The queue is drained: sleep until the next due time (at most a second, which also
        paces the sweep of lost leases), a wake-up with new work, or a store notification."""
        self._wake.clear()
        nxt = await self.store.next_due_at()
        now = self.clock()
        self._quiet_until = now + (1.0 if nxt is None else min(1.0, max(0.0, nxt - now)))

    async def _idle(self) -> None:
        if self._wake.is_set():
            self._wake.clear()
            return
        timeout = 1.0
        nxt = await self.store.next_due_at()
        now = self.clock()
        if nxt is not None and nxt > now:
            timeout = min(timeout, nxt - now)
        # Work already due that the last claim left is excluded: a busy endpoint (a completion
        # wakes us), or a paused channel or an open circuit, which end at known times. Polling
        # for it sooner would only rescan the excluded rows (100,000 behind a dead receiver).
        for until in (*self._deferred.values(), *(s.paused_until for s in self.channels.values())):
            if until > now:
                timeout = min(timeout, until - now)
        await self._wait(max(timeout, 0.01))
        self._wake.clear()

    async def _wait_wake(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _wait(self, timeout: float) -> None:
        """Until woken locally, notified by the store (PostgreSQL LISTEN: another instance took
        an event; that counts as new work), or `timeout` passes."""
        listen = getattr(self.store, "wait_for_work", None)
        if listen is None:
            await self._wait_wake(timeout)
            return
        woken = asyncio.ensure_future(self._wake.wait())
        notified = asyncio.ensure_future(listen(timeout))
        _, pending = await asyncio.wait({woken, notified}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if notified.done() and not notified.cancelled():
            self._quiet_until = 0.0  # maybe new work: look again
        self._wake.clear()

    # ---- outcomes
    async def _flush_loop(self) -> None:
        while True:
            first = await self._outcomes.get()
            batch = [first]
            while not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            stop = any(o.item_id == "" for o in batch)
            real = [o for o in batch if o.item_id]
            if any(o.kind is OutcomeKind.RETRY or o.kind is OutcomeKind.RELEASE for o in real):
                self._quiet_until = 0.0  # requeued work: the next claim must look again
            if real:
                lost = await self._finish_with_retry(real)
                for item_id in lost:
                    log.warning("lease_lost", delivery_id=item_id)
                if self.on_finished is not None:
                    self.on_finished()
                self._wake.set()
            if stop:
                return

    async def _finish_with_retry(self, outcomes: list[Outcome]) -> list[str]:
        """Record outcomes, retrying while the store is unreachable: a dropped outcome would
        become a resend when its lease expires. Gives up only after ~2 minutes (then the leases
        do their job)."""
        delay = 0.1
        for _ in range(40):
            try:
                return await self.store.finish(outcomes)
            except Exception:
                log.exception("outcomes_not_recorded", count=len(outcomes), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return []

    def _record(self, item: OutboxItem, kind: OutcomeKind, **kw: Any) -> None:
        self._outcomes.put_nowait(Outcome(item.id, item.lease_token, kind, self.clock(), **kw))
