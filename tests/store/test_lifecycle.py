"""The `Lifecycle` port (open, migrate, ping, close) and PostgreSQL's `WorkSignal`.

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.postgres import PostgresStore
from gateway.store.records import (
    StoreError,
)
from tests.store.helpers import dl, ev, make_store
from tests.support.pg import run_sync, throwaway_database, truncate


async def test_ping_answers_while_open(backend: str) -> None:
    s = make_store(backend)
    await s.open()
    assert await s.ping()
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
