"""The fast paths of issue 19 compute what the slow paths did (no timings asserted here: the
figures come from `python -m bench.run`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite_acks import open_delivery_for_address


async def test_an_old_sqlite_file_gets_the_partial_indexes(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    c = sqlite3.connect(path)
    c.execute("DROP INDEX deliveries_leased")
    c.execute("DROP INDEX deliveries_voice_address")
    c.execute("CREATE INDEX deliveries_lease ON deliveries(status, lease_until)")  # as before issue 19
    c.execute("CREATE INDEX deliveries_address ON deliveries(address, created_at)")
    c.commit()
    c.close()
    store = SqliteStore(path)
    await store.open()
    await store.close()
    c = sqlite3.connect(path)
    names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"deliveries_leased", "deliveries_voice_address"} <= names
    assert not {"deliveries_lease", "deliveries_address"} & names
    # the reply lookup's own SQL (as run), planned on the upgraded file
    seen: list[str] = []
    c.set_trace_callback(seen.append)
    assert open_delivery_for_address(c, "+8613800000000") is None
    c.set_trace_callback(None)
    query = seen[-1].replace("'+8613800000000'", "?")
    plan = " ".join(str(r) for r in c.execute("EXPLAIN QUERY PLAN " + query, ("+8613800000000",)))
    assert "deliveries_voice_address" in plan, plan
    c.close()
