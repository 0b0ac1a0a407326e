"""`gateway migrate`: bring a store's schema up to date, or copy a SQLite store into PostgreSQL.

    gateway migrate [--config F]                            # the configured store
    gateway migrate --from sqlite:///var/gateway.db --to postgresql://host/db

The copy runs in one PostgreSQL transaction into an empty database: events, deliveries,
unit_acks, ack_log, receipts, public_messages, report requests and reports, the roster's
revisions and the audit chain,
rows and sequence numbers intact. The chain is verified (every hash recomputed, every link checked) before the commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.store.common import audit_hash

# Parents before children (foreign keys); `order` keeps SQLite's rowid order, which the
# PostgreSQL `seq` columns then reproduce.
TABLES: dict[str, str] = {
    "events": "seq",
    "deliveries": "rowid",
    "unit_acks": "rowid",
    "ack_log": "seq",
    "receipts": "seq",
    "public_messages": "rowid",
    "report_requests": "rowid",
    "unit_reports": "rowid",
    "audit": "seq",
    "roster_revisions": "revision",  # the directory kept by the office, every revision
}
# tables a store made by an older gateway may lack (nothing to copy then)
_OPTIONAL = frozenset({"report_requests", "unit_reports", "roster_revisions"})
# Identity columns to move past the copied rows, so the next insert does not collide.
_IDENTITIES = ("events", "deliveries", "unit_acks", "ack_log", "receipts")
_BATCH = 5000


class MigrateError(Exception):
    """The copy cannot go ahead, or its result failed verification (nothing was committed)."""


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)
    audit_head: str = ""


def verify_chain(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Problems in an audit chain (empty when intact): broken links, altered records, gaps."""
    problems = []
    prev_hash, prev_seq = "", 0
    for r in rows:
        if r["seq"] != prev_seq + 1:
            problems.append(f"audit seq {r['seq']} follows {prev_seq}")
        if r["prev_hash"] != prev_hash:
            problems.append(f"audit seq {r['seq']}: link to the previous record is broken")
        want = audit_hash(r["seq"], r["at"], r["principal"], r["action"], r["subject"], r["detail"], r["prev_hash"])
        if r["hash"] != want:
            problems.append(f"audit seq {r['seq']}: hash does not match the content")
        prev_hash, prev_seq = r["hash"], r["seq"]
    return problems


def _sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise MigrateError(f"--from must be sqlite:///path, not {url.split('@')[-1]!r}")
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():  # sqlite3.connect would quietly create an empty database
        raise MigrateError(f"no SQLite store at {path}")
    return path


def _check_pg(url: str) -> None:
    if not url.startswith(("postgresql://", "postgres://")):
        raise MigrateError(f"--to must be postgresql://..., not {url.split('@')[-1]!r}")


async def _coercers(conn: Any, table: str, cols: Sequence[str]) -> list[Callable[[Any], Any]]:
    """Per-column converters to the target types: binary COPY accepts nothing looser."""
    types = {r["column_name"]: r["data_type"] for r in await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name=$1"
        " AND table_schema=current_schema()", table)}
    missing = [c for c in cols if c not in types]
    if missing:
        raise MigrateError(f"{table}: columns {missing} have no counterpart in PostgreSQL")
    conv: dict[str, Callable[[Any], Any]] = {"double precision": float, "integer": int, "bigint": int, "text": str}
    return [conv.get(types[c], lambda v: v) for c in cols]


async def _copy_table(src: sqlite3.Connection, conn: Any, table: str, order: str) -> int:
    cur = src.execute(f"SELECT * FROM {table} ORDER BY {order}")
    cols = [d[0] for d in cur.description]
    fix = await _coercers(conn, table, cols)
    n = 0
    while rows := await asyncio.to_thread(cur.fetchmany, _BATCH):
        records = [tuple(None if v is None else f(v) for f, v in zip(fix, row, strict=True)) for row in rows]
        await conn.copy_records_to_table(table, records=records, columns=cols)
        n += len(records)
    return n


async def copy_store(src_url: str, dst_url: str) -> CopyReport:
    """Copy a SQLite store into an empty PostgreSQL database (migrated first).

    Raises:
        MigrateError: bad URLs, a non-empty target, counts or audit chain not matching.
        asyncpg.PostgresError, OSError: the target database failed.
    """
    import asyncpg

    from gateway.store import pg_schema

    path = _sqlite_path(src_url)
    _check_pg(dst_url)
    src = sqlite3.connect(path, check_same_thread=False)
    conn = await asyncpg.connect(dst_url)
    report = CopyReport()
    try:
        async with conn.transaction():
            await pg_schema.apply(conn)
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM audit)"):
                raise MigrateError("the target database already holds events or audit records; refusing to merge")
            for table, order in TABLES.items():
                if table in _OPTIONAL and src.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                                      (table,)).fetchone() is None:
                    continue
                report.rows[table] = await _copy_table(src, conn, table, order)
            for table in _IDENTITIES:
                await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'),"
                                   f" (SELECT COALESCE(MAX(seq), 0) + 1 FROM {table}), false)")
            await _verify(src, conn, report)
    finally:
        await conn.close()
        src.close()
    return report


async def _verify(src: sqlite3.Connection, conn: Any, report: CopyReport) -> None:
    for table, n in report.rows.items():
        have = int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))
        if have != n or n != src.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]:
            raise MigrateError(f"{table}: copied {n} rows but the target holds {have}")
    rows = [dict(r.items()) for r in await conn.fetch("SELECT * FROM audit ORDER BY seq")]
    problems = verify_chain(rows)
    if problems:
        raise MigrateError("audit chain broken after copy: " + "; ".join(problems[:5]))
    head = src.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    report.audit_head = rows[-1]["hash"] if rows else ""
    if (head[0] if head else "") != report.audit_head:
        raise MigrateError("the copied audit chain does not end where the source does")


async def apply_configured(url: str) -> str:
    """Bring the schema of the store at `url` up to date; returns what was done.

    Raises:
        gateway.store.base.StoreError, asyncpg.PostgresError, OSError: the store is unusable.
    """
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SqliteStore

        store = SqliteStore(url.removeprefix("sqlite:///"))
        await store.open()  # the SQLite schema is idempotent DDL, applied on every open
        await store.close()
        return f"SQLite schema applied to {url.removeprefix('sqlite:///')}"
    _check_pg(url)
    import asyncpg

    from gateway.store import pg_schema

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            applied = await pg_schema.apply(conn)
    finally:
        await conn.close()
    where = url.split("@")[-1]
    if applied:
        return f"applied migrations {applied} to {where}"
    return f"{where} is already at schema version {pg_schema.latest()}"


def run(*, src: str | None, dst: str | None, configured_url: Callable[[], str]) -> int:
    """The CLI body: exit status 0 on success, 1 on failure, 2 on misuse."""
    if (src is None) != (dst is None):
        print("error: --from and --to go together", file=sys.stderr)
        return 2
    try:
        if src is not None and dst is not None:
            report = asyncio.run(copy_store(src, dst))
            counts = ", ".join(f"{t} {n}" for t, n in report.rows.items())
            print(f"copied {counts}; audit chain verified (head {report.audit_head[:12] or 'empty'})")
        else:
            print(asyncio.run(apply_configured(configured_url())))
    except MigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the database's own message is the useful part
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
