"""The `Signoffs` port: a draft is held (nothing claimable, its chain untouched) until signed;
signing, rejecting and expiry are each a compare-and-set from `pending`; notices are leased.

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import dataclasses

from gateway.store.ports import Store
from gateway.store.records import NewEvent
from gateway.store.signoffs import STATUS_STEP
from tests.store.helpers import T0, ack, claim, dl, ev, status_of


def draft(eid: str = "d1", *, supersedes: str | None = None, kind: str = "warning.issued", at: float = T0,
          expires: float = T0 + 3600) -> NewEvent:
    return dataclasses.replace(ev(eid, supersedes=supersedes, kind=kind, at=at), signoff={
        "state": "pending", "level": "red", "submitter": "writer", "asked": [], "expires_at": expires,
        "next_notify_at": at})


async def test_a_draft_is_held_until_signed_then_due_with_its_windows_moved_on(store: Store) -> None:
    await store.record_event(draft(), [dl("a"), dl("b", "u2")], [ack(), ack("u2", required=False, deadline=None)])
    ev_ = await store.get_event("d1")
    assert ev_["state"] == "pending_signoff" and {d["status"] for d in ev_["deliveries"]} == {"held"}
    assert ev_["signoff"]["state"] == "pending" and ev_["signoff"]["submitter"] == "writer"
    assert await claim(store, now=T0 + 10) == {}  # nothing is claimable while held
    assert await store.claim_escalations(now=T0 + 10_000, limit=10, lease_for=5) == []
    assert (await store.outbox_stats(T0 + 10)).depth == {}
    assert [r["event_id"] for r in await store.list_signoffs(state="pending", limit=10)] == ["d1"]

    released = await store.release_event("d1", by="commander", at=T0 + 100, ref="泽污应指〔2026〕1号")
    assert released is not None and released.deliveries == 2 and released.state == "active"
    assert await store.release_event("d1", by="commander", at=T0 + 101, ref=None) is None  # once only
    row = await store.get_signoff("d1")
    assert row is not None and row["state"] == "signed" and row["decided_by"] == "commander"
    assert row["ref"] == "泽污应指〔2026〕1号" and row["decided_at"] == T0 + 100
    ev_ = await store.get_event("d1")
    assert ev_["state"] == "active" and ev_["signoff"]["decided_by"] == "commander"
    items = await claim(store, now=T0 + 100)
    assert set(items) == {"a", "b"} and items["a"].deadline == T0 + 3600 + 100
    assert items["a"].accepted_at == T0 + 100  # latency is measured from the signature
    esc = await store.claim_escalations(now=T0 + 700, limit=10, lease_for=5)
    assert [(e["unit_id"], e["deadline"]) for e in esc] == [("u1", T0 + 700)]  # the ack window starts at signing


async def test_a_draft_supersedes_its_chain_only_when_signed(store: Store) -> None:
    await store.record_event(ev("o1"), [dl("o")], [ack()])
    await store.record_event(draft("up", supersedes="o1", kind="warning.upgraded", at=T0 + 1), [dl("u")], [ack()])
    assert (await store.get_event("o1"))["state"] == "active"
    assert await status_of(store, "o") == ("pending", None, 0)  # the warning in force still goes out
    assert await store.release_event("up", by="commander", at=T0 + 5, ref=None) is not None
    assert (await store.get_event("o1"))["state"] == "superseded"
    assert await status_of(store, "o") == ("cancelled", "superseded", 0)
    assert (await store.get_event("up"))["chain_id"] == "o1"


async def test_reject_expire_and_cancel_end_a_draft_and_nothing_is_sent(store: Store) -> None:
    await store.record_event(draft("r1"), [dl("r")], [ack()])
    await store.record_event(draft("x1", expires=T0 + 50), [dl("x")], [ack()])
    await store.record_event(draft("c1"), [dl("c")], [ack()])
    assert await store.reject_event("r1", by="commander", at=T0 + 10, reason="数据有误")
    assert not await store.reject_event("r1", by="commander", at=T0 + 11, reason="again")
    assert await store.release_event("r1", by="commander", at=T0 + 12, ref=None) is None
    assert (await store.get_event("r1"))["state"] == "rejected"
    assert await status_of(store, "r") == ("cancelled", "cancelled", 0)
    assert await store.release_event("x1", by="commander", at=T0 + 60, ref=None) is None  # past its expiry
    assert await store.expire_signoffs(now=T0 + 60) == ["x1"]
    assert await store.expire_signoffs(now=T0 + 61) == []
    assert (await store.get_event("x1"))["state"] == "expired" and await status_of(store, "x") == (
        "cancelled", "cancelled", 0)
    assert await store.cancel_event("c1", at=T0 + 70, by="ops") == 1
    row = await store.get_signoff("c1")
    assert row is not None and row["state"] == "cancelled"
    assert await store.release_event("c1", by="commander", at=T0 + 71, ref=None) is None
    assert await claim(store, now=T0 + 100) == {}
    assert await store.get_signoff("nope") is None


async def test_sign_and_reject_racing_decide_once(store: Store, second: Store) -> None:
    await store.record_event(draft(), [dl("a")], [ack()])
    results = await asyncio.gather(store.release_event("d1", by="commander", at=T0 + 1, ref=None),
                                   second.reject_event("d1", by="deputy", at=T0 + 1, reason="no"),
                                   second.release_event("d1", by="deputy", at=T0 + 1, ref=None))
    assert sum(1 for r in results if r) == 1
    state = (await store.get_signoff("d1") or {})["state"]
    assert state in ("signed", "rejected")
    assert {d["status"] for d in (await store.get_event("d1"))["deliveries"]} == (
        {"pending"} if state == "signed" else {"cancelled"})


async def test_notices_are_leased_and_advanced_once(store: Store, second: Store) -> None:
    await store.record_event(draft(), [dl("a")], [ack()])
    got = await store.claim_signoff_notices(now=T0, limit=10, lease_for=30)
    assert [r["event_id"] for r in got] == ["d1"] and got[0]["notice_step"] == 0 and got[0]["type"] == "warning.issued"
    assert await second.claim_signoff_notices(now=T0 + 1, limit=10, lease_for=30) == []  # leased
    assert await store.advance_signoff_notice("d1", step=0, next_at=T0 + 900, asked=["deputy_commander"])
    assert not await second.advance_signoff_notice("d1", step=0, next_at=T0 + 900, asked=["x"])
    row = await store.get_signoff("d1")
    assert row is not None and row["asked"] == ["deputy_commander"] and row["notice_step"] == 1
    assert await store.claim_signoff_notices(now=T0 + 899, limit=10, lease_for=30) == []
    assert [r["event_id"] for r in await store.claim_signoff_notices(now=T0 + 900, limit=10, lease_for=30)] == ["d1"]
    await store.release_event("d1", by="commander", at=T0 + 901, ref=None)
    # signed: the next notice is the status report, due at the first ack deadline (moved on by the wait)
    assert await store.claim_signoff_notices(now=T0 + 1500, limit=10, lease_for=30) == []
    due = await store.claim_signoff_notices(now=T0 + 1501, limit=10, lease_for=30)
    assert [(r["event_id"], r["notice_step"], r["state"]) for r in due] == [("d1", STATUS_STEP, "signed")]
    assert await store.advance_signoff_notice("d1", step=STATUS_STEP, next_at=None, asked=[])
    assert await store.claim_signoff_notices(now=T0 + 10_000, limit=10, lease_for=30) == []


async def test_a_release_by_a_trusted_source_is_recorded_and_sends_at_once(store: Store) -> None:
    e = dataclasses.replace(ev("city"), signoff={"state": "released", "level": "red", "submitter": "city",
                                                 "decided_by": "cap:city-platform"})
    await store.record_event(e, [dl("a")], [ack()])
    ev_ = await store.get_event("city")
    assert ev_["state"] == "active" and ev_["signoff"]["state"] == "released"
    assert ev_["signoff"]["decided_by"] == "cap:city-platform"
    assert set(await claim(store)) == {"a"}
    assert await store.claim_signoff_notices(now=T0 + 10_000, limit=10, lease_for=30) == []  # no ack deadline given
