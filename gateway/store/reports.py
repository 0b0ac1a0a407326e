"""The `Reports` port on both backends: the same SQL (written with `?`, numbered `$n` for
PostgreSQL), with one mixin per backend that runs it in the backend's own transaction."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from gateway.store.pg_conn import Conn, affected
from gateway.store.records import ReportRequest, UnitReport

T = TypeVar("T")


class _Row(Protocol):
    """A result row of either driver (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str, /) -> Any: ...

STEPS = {"reminded": "reminded_at", "missing": "missing_at", "rollup": "rollup_at"}
_COLS = ("id, key, chain_id, kind, period, level, status, due_at, units, created_at, reminded_at, missing_at,"
         " rollup_at")
_REPORT_COLS = "request_id, unit_id, unit_name, version, data, entered_by, via, submitted_at, late"

SQL = {
    "open": f"INSERT INTO report_requests ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
    "by_id": f"SELECT {_COLS} FROM report_requests WHERE id=?",
    "by_key": f"SELECT {_COLS} FROM report_requests WHERE key=?",
    "of_chain": f"SELECT {_COLS} FROM report_requests WHERE chain_id=? AND due_at>? ORDER BY due_at, id LIMIT ?",
    "all": f"SELECT {_COLS} FROM report_requests WHERE due_at>? ORDER BY due_at, id LIMIT ?",
    "last_version": "SELECT MAX(version) FROM unit_reports WHERE request_id=? AND unit_id=?",
    "add": f"INSERT INTO unit_reports ({_REPORT_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
    "versions": f"SELECT {_REPORT_COLS} FROM unit_reports WHERE request_id=? ORDER BY unit_id, version",
    "latest": (f"SELECT {_REPORT_COLS} FROM unit_reports r WHERE request_id=? AND version=(SELECT MAX(version)"
               " FROM unit_reports x WHERE x.request_id=r.request_id AND x.unit_id=r.unit_id) ORDER BY unit_id"),
    "chain": ("SELECT id, type, level, status, state, source, principal, accepted_at, supersedes, data FROM events"
              " WHERE chain_id=? ORDER BY chain_seq"),
}
for _step, _col in STEPS.items():
    SQL[f"step_{_step}"] = f"UPDATE report_requests SET {_col}=? WHERE id=? AND {_col} IS NULL"


def _numbered(sql: str) -> str:
    n = iter(range(1, 100))
    return re.sub(r"\?", lambda _: f"${next(n)}", sql)


PG = {k: _numbered(v) for k, v in SQL.items()}
PG["lock"] = "SELECT 1 FROM report_requests WHERE id=$1 FOR UPDATE"


def request_args(r: ReportRequest) -> tuple[Any, ...]:
    return (r.id, r.key, r.chain_id, r.kind, r.period, r.level, r.status, r.due_at,
            json.dumps([list(u) for u in r.units], ensure_ascii=False), r.created_at, r.reminded_at, r.missing_at,
            r.rollup_at)


def request_of(row: _Row) -> ReportRequest:
    return ReportRequest(
        id=row["id"], key=row["key"], chain_id=row["chain_id"], kind=row["kind"], period=row["period"],
        level=row["level"], status=row["status"], due_at=float(row["due_at"]),
        units=tuple((str(u[0]), str(u[1])) for u in json.loads(row["units"])), created_at=float(row["created_at"]),
        reminded_at=row["reminded_at"], missing_at=row["missing_at"], rollup_at=row["rollup_at"])


def report_args(r: UnitReport, version: int) -> tuple[Any, ...]:
    return (r.request_id, r.unit_id, r.unit_name, version, json.dumps(dict(r.data), ensure_ascii=False),
            r.entered_by, r.via, r.submitted_at, 1 if r.late else 0)


def report_of(row: _Row) -> UnitReport:
    return UnitReport(request_id=row["request_id"], unit_id=row["unit_id"], unit_name=row["unit_name"],
                      data=json.loads(row["data"]), entered_by=row["entered_by"], via=row["via"],
                      submitted_at=float(row["submitted_at"]), late=bool(row["late"]), version=int(row["version"]))


def event_of(row: _Row) -> dict[str, Any]:
    out = {k: row[k] for k in ("id", "type", "level", "status", "state", "source", "principal", "supersedes")}
    return {**out, "accepted_at": float(row["accepted_at"]), "data": json.loads(row["data"])}


def step_sql(step: str, table: dict[str, str]) -> str:
    """Raises ValueError for a step that is not one of STEPS."""
    if step not in STEPS:
        raise ValueError(f"unknown report step {step!r}")
    return table[f"step_{step}"]


class SqliteReports:
    """`Reports` for `SqliteStore` (runs each verb in the store's thread, one transaction)."""

    _run: Callable[..., Awaitable[Any]]

    async def open_report_request(self, request: ReportRequest) -> bool:
        return bool(await self._run(lambda c: c.execute(SQL["open"], request_args(request)).rowcount == 1,
                                    durable=True))

    async def report_request(self, *, request_id: str | None = None, key: str | None = None
                             ) -> ReportRequest | None:
        def q(c: sqlite3.Connection) -> ReportRequest | None:
            row = c.execute(SQL["by_id"] if request_id is not None else SQL["by_key"],
                            (request_id if request_id is not None else key,)).fetchone()
            return request_of(row) if row is not None else None

        result: ReportRequest | None = await self._run(q)
        return result

    async def report_requests(self, *, chain_id: str | None = None, due_after: float | None = None,
                              limit: int = 500) -> list[ReportRequest]:
        after = float("-inf") if due_after is None else due_after

        def q(c: sqlite3.Connection) -> list[ReportRequest]:
            if chain_id is not None:
                rows = c.execute(SQL["of_chain"], (chain_id, after, limit)).fetchall()
            else:
                rows = c.execute(SQL["all"], (after, limit)).fetchall()
            return [request_of(r) for r in rows]

        result: list[ReportRequest] = await self._run(q)
        return result

    async def add_report(self, report: UnitReport, *, corrections_until: float) -> int | None:
        def tx(c: sqlite3.Connection) -> int | None:
            last = c.execute(SQL["last_version"], (report.request_id, report.unit_id)).fetchone()[0]
            if last is not None and report.submitted_at > corrections_until:
                return None
            version = int(last or 0) + 1
            c.execute(SQL["add"], report_args(report, version))
            return version

        result: int | None = await self._run(tx, durable=True)
        return result

    async def unit_reports(self, request_id: str, *, versions: bool = False) -> list[UnitReport]:
        def q(c: sqlite3.Connection) -> list[UnitReport]:
            return [report_of(r) for r in c.execute(SQL["versions" if versions else "latest"], (request_id,))]

        result: list[UnitReport] = await self._run(q)
        return result

    async def mark_report_step(self, request_id: str, step: str, *, at: float) -> bool:
        sql = step_sql(step, SQL)
        return bool(await self._run(lambda c: c.execute(sql, (at, request_id)).rowcount == 1, durable=True))

    async def chain_events(self, chain_id: str) -> list[dict[str, Any]]:
        def q(c: sqlite3.Connection) -> list[dict[str, Any]]:
            return [event_of(r) for r in c.execute(SQL["chain"], (chain_id,))]

        result: list[dict[str, Any]] = await self._run(q)
        return result


class PgReports:
    """`Reports` for `PostgresStore` (each verb one transaction on a pooled connection)."""

    _run: Callable[..., Awaitable[Any]]

    async def open_report_request(self, request: ReportRequest) -> bool:
        async def q(c: Conn) -> bool:
            return affected(await c.execute(PG["open"], *request_args(request))) == 1

        return bool(await self._run(q))

    async def report_request(self, *, request_id: str | None = None, key: str | None = None
                             ) -> ReportRequest | None:
        async def q(c: Conn) -> ReportRequest | None:
            row = await c.fetchrow(PG["by_id"] if request_id is not None else PG["by_key"],
                                   request_id if request_id is not None else key)
            return request_of(row) if row is not None else None

        result: ReportRequest | None = await self._run(q)
        return result

    async def report_requests(self, *, chain_id: str | None = None, due_after: float | None = None,
                              limit: int = 500) -> list[ReportRequest]:
        after = float("-inf") if due_after is None else due_after

        async def q(c: Conn) -> list[ReportRequest]:
            if chain_id is not None:
                rows = await c.fetch(PG["of_chain"], chain_id, after, limit)
            else:
                rows = await c.fetch(PG["all"], after, limit)
            return [request_of(r) for r in rows]

        result: list[ReportRequest] = await self._run(q)
        return result

    async def add_report(self, report: UnitReport, *, corrections_until: float) -> int | None:
        async def tx(c: Conn) -> int | None:
            await c.execute(PG["lock"], report.request_id)  # one version number per writer
            last = await c.fetchval(PG["last_version"], report.request_id, report.unit_id)
            if last is not None and report.submitted_at > corrections_until:
                return None
            version = int(last or 0) + 1
            await c.execute(PG["add"], *report_args(report, version))
            return version

        result: int | None = await self._run(tx)
        return result

    async def unit_reports(self, request_id: str, *, versions: bool = False) -> list[UnitReport]:
        async def q(c: Conn) -> list[UnitReport]:
            return [report_of(r) for r in await c.fetch(PG["versions" if versions else "latest"], request_id)]

        result: list[UnitReport] = await self._run(q)
        return result

    async def mark_report_step(self, request_id: str, step: str, *, at: float) -> bool:
        sql = step_sql(step, PG)

        async def q(c: Conn) -> bool:
            return affected(await c.execute(sql, at, request_id)) == 1

        return bool(await self._run(q))

    async def chain_events(self, chain_id: str) -> list[dict[str, Any]]:
        async def q(c: Conn) -> list[dict[str, Any]]:
            return [event_of(r) for r in await c.fetch(PG["chain"], chain_id)]

        result: list[dict[str, Any]] = await self._run(q)
        return result
