"""The `CapFeedEntries` port's statements, for SQLite (`?`) and PostgreSQL (`$n`): the same SQL,
an upsert whose update only happens when the entry is free to claim."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway.store.records import FeedKey

# A claim wins when there is no row, or the row is a claim older than the lease (its holder
# crashed), or the holder's own (a retry). A taken entry is never claimed again.
_CLAIM = (
    "INSERT INTO cap_feed_entries (sender, identifier, sent, state, holder, claimed_at)"
    " VALUES ({0}, {1}, {2}, 'claimed', {3}, {4})"
    " ON CONFLICT (sender, identifier, sent) DO UPDATE SET holder=excluded.holder, claimed_at=excluded.claimed_at"
    " WHERE cap_feed_entries.state='claimed'"
    " AND (cap_feed_entries.claimed_at < {5} OR cap_feed_entries.holder=excluded.holder)"
)
_FINISH = (
    "UPDATE cap_feed_entries SET state='taken', outcome={0}, event_id={1}, taken_at={2}"
    " WHERE sender={3} AND identifier={4} AND sent={5} AND holder={6}"
)
_RELEASE = ("DELETE FROM cap_feed_entries WHERE sender={0} AND identifier={1} AND sent={2} AND holder={3}"
            " AND state='claimed'")
_TAKEN = "SELECT sender, identifier, sent FROM cap_feed_entries WHERE state='taken' AND sender={0}"

SQLITE = {k: v.format(*["?"] * 7) for k, v in
          {"claim": _CLAIM, "finish": _FINISH, "release": _RELEASE, "taken": _TAKEN}.items()}
PG = {k: v.format(*[f"${i}" for i in range(1, 8)]) for k, v in
      {"claim": _CLAIM, "finish": _FINISH, "release": _RELEASE, "taken": _TAKEN}.items()}


def claim_args(key: FeedKey, holder: str, at: float, lease_for: float) -> tuple[Any, ...]:
    return key.sender, key.identifier, key.sent, holder, at, at - lease_for


def finish_args(key: FeedKey, holder: str, at: float, outcome: str, event_id: str | None) -> tuple[Any, ...]:
    return outcome, event_id, at, key.sender, key.identifier, key.sent, holder


def release_args(key: FeedKey, holder: str) -> tuple[Any, ...]:
    return key.sender, key.identifier, key.sent, holder


def taken_of(rows: Sequence[Any], keys: Sequence[FeedKey]) -> set[FeedKey]:
    wanted = set(keys)
    return {k for r in rows if (k := FeedKey(r[0], r[1], r[2])) in wanted}


# ---- SQLite bodies (run in the store's thread, one transaction each)

def sqlite_taken(c: sqlite3.Connection, keys: Sequence[FeedKey]) -> set[FeedKey]:
    out: set[FeedKey] = set()
    for sender in {k.sender for k in keys}:
        out |= taken_of(c.execute(SQLITE["taken"], (sender,)).fetchall(), keys)
    return out


def sqlite_claim(c: sqlite3.Connection, key: FeedKey, holder: str, at: float, lease_for: float) -> bool:
    return c.execute(SQLITE["claim"], claim_args(key, holder, at, lease_for)).rowcount == 1


def sqlite_finish(c: sqlite3.Connection, key: FeedKey, holder: str, at: float, outcome: str,
                  event_id: str | None) -> None:
    c.execute(SQLITE["finish"], finish_args(key, holder, at, outcome, event_id))


def sqlite_release(c: sqlite3.Connection, key: FeedKey, holder: str) -> None:
    c.execute(SQLITE["release"], release_args(key, holder))
