"""Versioned schema migrations for PostgreSQL (`gateway/store/migrations_pg/NNNN_name.sql`).

Applied in one transaction under an advisory lock, so several instances starting together
neither race nor half-apply; `schema_migrations` records what is in place.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources

from gateway.store.pg_conn import LOCK_MIGRATE, Conn
from gateway.store.records import StoreError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The shipped migrations, in version order."""
    folder = resources.files("gateway.store").joinpath("migrations_pg")
    out = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    return sorted(out, key=lambda mg: mg.version)


def latest() -> int:
    return max((m.version for m in available()), default=0)


_CREATE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " applied_at DOUBLE PRECISION NOT NULL)"
)


async def apply(conn: Conn) -> list[int]:
    """Apply what is missing, in one transaction; returns the versions applied now.

    The caller opens the transaction: the advisory lock is transaction-scoped.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_MIGRATE)
    await conn.execute(_CREATE)
    done = {int(r["version"]) for r in await conn.fetch("SELECT version FROM schema_migrations")}
    applied = []
    for mg in available():
        if mg.version in done:
            continue
        await conn.execute(mg.sql)
        await conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                           mg.version, mg.name, time.time())
        applied.append(mg.version)
    return applied


async def check(conn: Conn) -> None:
    """Verify the schema is current when automatic migration is off.

    Raises:
        StoreError: migrations are missing (run `gateway migrate`) or the database is newer.
    """
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    have = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")) if exists else 0
    want = latest()
    if have < want:
        raise StoreError(f"database schema is at version {have}, this gateway needs {want}: run `gateway migrate`")
    if have > want:
        raise StoreError(f"database schema version {have} is newer than this gateway knows ({want})")
