"""The `Events` port: reading events, cancelling one (and what cancelling does to work in flight).

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.ports import Store
from gateway.store.records import (
    Outcome,
    OutcomeKind,
    UnknownEvent,
)
from tests.store.helpers import T0, ack, claim, dl, ev, make_store, scenario, status_of
from tests.support.pg import run_sync, truncate


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


async def test_get_and_list_events_look_the_same_on_both_backends(tmp_path: Path, pg_url: str) -> None:
    run_sync(lambda: truncate(pg_url))
    outputs = []
    for url in (f"sqlite:///{tmp_path / 'gw.db'}", pg_url):
        s = make_store(url)
        await s.open()
        try:
            outputs.append(await scenario(s))
        finally:
            await s.close()
    lite, pg = outputs
    for key in lite:
        assert lite[key] == pg[key], key
