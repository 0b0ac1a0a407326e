"""The Directory port, on SQLite and PostgreSQL: revisions of the roster, the newest in force,
a change refused when somebody else changed it first, its audit record in the same transaction."""

from __future__ import annotations

import json

from gateway.store.ports import Store
from gateway.store.records import RosterDoc
from tests.store.helpers import T0


def doc(revision: int, text: str, source: str = "import:xlsx") -> RosterDoc:
    return RosterDoc(revision=revision, version=f"v{revision}", text=text, source=source, by="office", at=T0 + revision)


async def test_revisions_follow_one_another_and_the_newest_is_in_force(store: Store, second: Store) -> None:
    assert await store.current_roster() is None and await store.roster_revision() == 0
    assert await store.put_roster(doc(1, "units: [1]", "seed:zezhou.yaml"))
    assert await second.roster_revision() == 1
    audit = {"principal": "office", "action": "roster_changed", "subject": "roster",
             "detail": {"revision": 2, "persons_added": ["p1"]}}
    assert await second.put_roster(doc(2, "units: [2]"), audit=audit)
    # another writer who read revision 1 loses, and its audit record is not written either
    assert not await store.put_roster(doc(2, "units: [other]"),
                                      audit={**audit, "detail": {"revision": 2, "lost": True}})
    current = await store.current_roster()
    assert current == doc(2, "units: [2]")
    records = [r for r in await store.list_audit(after=0, limit=100) if r["action"] == "roster_changed"]
    assert len(records) == 1 and json.loads(records[0]["detail"]) == {"revision": 2, "persons_added": ["p1"]}
