"""The CapFeedEntries port, on SQLite and PostgreSQL: an entry is claimed by one holder at a
time, taken once, and claimable again only after a holder crashed."""

from __future__ import annotations

from gateway.store.ports import Store
from gateway.store.records import FeedKey
from tests.store.helpers import T0

A = FeedKey("shanxi-platform", "14052500000000_20261201080000_1", "2026-12-01T08:00:00+08:00")
B = FeedKey("shanxi-platform", "14052500000000_20261201090000_1", "2026-12-01T09:00:00+08:00")
OTHER_FEED = FeedKey("city-platform", A.identifier, A.sent)


async def test_an_entry_is_claimed_once_and_taken_once(store: Store, second: Store) -> None:
    assert await store.taken_feed_entries([A, B]) == set()
    assert await store.claim_feed_entry(A, holder="i1", at=T0, lease_for=60)
    assert not await second.claim_feed_entry(A, holder="i2", at=T0 + 1, lease_for=60)  # held by i1
    assert await store.claim_feed_entry(A, holder="i1", at=T0 + 2, lease_for=60)  # its own retry
    assert await second.claim_feed_entry(OTHER_FEED, holder="i2", at=T0, lease_for=60)  # another sender
    await store.finish_feed_entry(A, holder="i1", at=T0 + 3, outcome="accepted", event_id=A.identifier)
    assert await second.taken_feed_entries([A, B, OTHER_FEED]) == {A}
    # taken is final: not even a lapsed lease or the same holder takes it again
    assert not await second.claim_feed_entry(A, holder="i2", at=T0 + 10_000, lease_for=60)
    assert not await store.claim_feed_entry(A, holder="i1", at=T0 + 10_000, lease_for=60)


async def test_a_crashed_holders_claim_lapses_and_a_release_frees_it(store: Store, second: Store) -> None:
    assert await store.claim_feed_entry(B, holder="crashed", at=T0, lease_for=60)
    assert not await second.claim_feed_entry(B, holder="i2", at=T0 + 59, lease_for=60)
    assert await second.claim_feed_entry(B, holder="i2", at=T0 + 61, lease_for=60)
    # the old holder's late finish does not overwrite the new claim
    await store.finish_feed_entry(B, holder="crashed", at=T0 + 62, outcome="accepted", event_id=None)
    assert await store.taken_feed_entries([B]) == set()
    await second.release_feed_entry(B, holder="i2")
    assert await store.claim_feed_entry(B, holder="i3", at=T0 + 63, lease_for=60)
    await store.finish_feed_entry(B, holder="i3", at=T0 + 64, outcome="refused:not_our_area", event_id=None)
    assert await second.taken_feed_entries([A, B]) == {B}
