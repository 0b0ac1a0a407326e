"""The store conformance suite's fixtures: every `store` test runs on SQLite and PostgreSQL.

PostgreSQL runs in a throwaway database created for the session (emptied before each test);
those cases skip, saying why, only when no server answers on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.store.ports import Store
from tests.store.helpers import make_store
from tests.support.pg import run_sync, throwaway_database, truncate


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with throwaway_database() as (_, url):
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gw.db'}"
    url: str = request.getfixturevalue("pg_url")
    run_sync(lambda: truncate(url))
    return url


@pytest.fixture
async def store(backend: str) -> AsyncIterator[Store]:
    s = make_store(backend)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def second(backend: str, store: Store) -> AsyncIterator[Store]:
    """Another instance on the same database (another pool, or another SQLite connection)."""
    s = make_store(backend)
    await s.open()
    yield s
    await s.close()
