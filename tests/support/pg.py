"""The machine's local PostgreSQL for tests: throwaway databases and cluster control.

Admin work runs on its own thread with its own event loop (`run_sync`), so sync fixtures can
use it without touching the loop pytest-asyncio gives each test.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

T = TypeVar("T")

HOST, PORT = "127.0.0.1", 5432
# Where to run CREATE/DROP DATABASE: GATEWAY_TEST_PG_ADMIN_URL, else the usual local set-ups
# (trust auth as postgres or root, on the `postgres` or `test` database).
ADMIN_CANDIDATES = [
    f"postgresql://{user}@{HOST}:{PORT}/{db}" for user in ("postgres", "root") for db in ("postgres", "test")
]
STORE_TABLES = ("events", "deliveries", "unit_acks", "ack_log", "audit", "receipts", "public_messages",
                "cap_feed_entries", "report_requests", "unit_reports", "roster_revisions")


def run_sync(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine function to completion on a private thread and loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(fn())).result()


def url_for(admin_url: str, database: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + database


async def find_admin_url() -> str | None:
    """The first admin URL a server answers on, or None when no PostgreSQL is reachable."""
    env = os.environ.get("GATEWAY_TEST_PG_ADMIN_URL")
    for url in [env] if env else ADMIN_CANDIDATES:
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            continue
        await conn.close()
        return url
    return None


async def create_database(admin_url: str, prefix: str = "gw_test") -> str:
    """CREATE DATABASE <prefix>_<random>; returns its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url_for(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        # FORCE: a daemon killed with -9 may leave sessions the server has not reaped yet
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def truncate(url: str) -> None:
    """Empty every store table (the schema and its migrations stay)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        exists = await conn.fetchval("SELECT to_regclass('events') IS NOT NULL")
        if exists:
            await conn.execute(f"TRUNCATE {', '.join(STORE_TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@contextmanager
def throwaway_database(prefix: str = "gw_test") -> Iterator[tuple[str, str]]:
    """(admin_url, url) of a new database, dropped afterwards; skips when no server answers."""
    admin = run_sync(find_admin_url)
    if admin is None:
        pytest.skip(f"no PostgreSQL server answers on {HOST}:{PORT} (tried {', '.join(ADMIN_CANDIDATES)};"
                    " set GATEWAY_TEST_PG_ADMIN_URL or start it: pg_ctlcluster <version> main start)")
    url = run_sync(lambda: create_database(admin, prefix))
    try:
        yield admin, url
    finally:
        run_sync(lambda: drop_database(admin, url))


# ---- the server itself (cluster tests): Debian's pg_ctlcluster, run as root
def cluster_version() -> str | None:
    root = Path("/etc/postgresql")
    versions = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    return versions[-1] if versions else None


def can_control_cluster() -> bool:
    return cluster_version() is not None and os.geteuid() == 0 and _which("pg_ctlcluster")


def _which(cmd: str) -> bool:
    return any(os.access(os.path.join(p, cmd), os.X_OK) for p in os.environ.get("PATH", "").split(os.pathsep))


def pg_ctl(action: str) -> None:
    """pg_ctlcluster <version> main <action> (start, stop, restart).

    Raises:
        subprocess.CalledProcessError: pg_ctlcluster failed.
    """
    version = cluster_version()
    assert version is not None
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                   check=True, capture_output=True, timeout=60)


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    """Block until the server accepts connections again.

    Raises:
        TimeoutError: still down after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async def probe() -> Any:
            conn = await asyncpg.connect(url, timeout=2)
            await conn.close()

        try:
            run_sync(probe)
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            time.sleep(0.2)
    raise TimeoutError(f"PostgreSQL not back within {timeout}s")
