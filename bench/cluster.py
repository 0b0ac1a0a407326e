"""Scale-out on PostgreSQL for the benchmark (issue 5, issue 9 item 6): a throwaway database,
and where the CPU of a run goes.

Used by `bench.run` for the `pg1`/`pg2`/`pg3` cases (1, 2, 3 daemons on one fresh database):

- `throwaway_database()`: `CREATE DATABASE gw_bench_<random>` on the local server as `postgres`
  (override with `BENCH_PG_ADMIN_URL`), always dropped afterwards (`WITH (FORCE)`).
- `PgWatch`: the PostgreSQL processes that serve the bench database (its backends plus the
  shared background processes: WAL writer, checkpointer, ...) and their CPU from /proc, and a
  sampler of `pg_stat_activity` during a run (are the backends busy, waiting on a lock or on
  WAL, or idle waiting for the daemons?).
- `machine_busy()`: busy CPU-seconds of the whole machine from /proc/stat, so a run's CPU can be
  split into daemons / PostgreSQL / receiver / harness / everything else.
- `delivered_count()`: `gateway_deliveries_total{outcome="delivered"}` from one daemon's
  /metrics, for each instance's share of the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench.procstat import cpu_seconds

ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_TICKS = os.sysconf("SC_CLK_TCK")


class NoPostgres(RuntimeError):
    """No PostgreSQL server answers at the admin URL."""


def url_for(database: str, admin_url: str = ADMIN_URL) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + database


@contextlib.asynccontextmanager
async def throwaway_database(prefix: str = "gw_bench", admin_url: str = ADMIN_URL) -> AsyncIterator[str]:
    """Yield the URL of a new, empty database; it is dropped on the way out whatever happened.

    Raises:
        NoPostgres: the server does not answer at `admin_url`.
    """
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise NoPostgres(f"no PostgreSQL at {admin_url}: {exc}") from exc
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield url_for(name, admin_url)
    finally:
        # shielded: a hard timeout or Ctrl-C of the case must not leave the database behind
        await asyncio.shield(_drop(admin_url, name))


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        # FORCE: a daemon that was killed may leave sessions the server has not reaped yet
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=30)
    finally:
        await conn.close()


def machine_busy() -> tuple[float, float]:
    """(busy, of which irq + softirq) CPU-seconds of the whole machine since boot (all cores).

    irq/softirq time is no process's: on loopback it is mostly the TCP stack carrying the
    webhooks and the PostgreSQL protocol between processes.
    """
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS, (irq + softirq) / _TICKS


def all_processes_cpu() -> dict[int, tuple[str, float]]:
    """{pid: (command name, utime + stime seconds)} of every process on the machine (like one `top` frame)."""
    out: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                raw = f.read()
        except OSError:  # exited meanwhile
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        out[int(entry.name)] = (comm, (int(fields[11]) + int(fields[12])) / _TICKS)
    return out


def cpu_by_command(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                   exclude: set[int]) -> list[tuple[str, float]]:
    """CPU-seconds between two `all_processes_cpu()` frames by command name, most first, leaving out `exclude`.

    A process born in between counts in full; one that exited in between is lost (short-lived
    helpers only: every long-lived process of a run is there at both ends).
    """
    by: dict[str, float] = {}
    for pid, (comm, cpu) in after.items():
        if pid in exclude:
            continue
        prev = before.get(pid)
        delta = cpu - prev[1] if prev is not None and prev[0] == comm else cpu
        if delta > 0:
            by[comm] = by.get(comm, 0.0) + delta
    return sorted(by.items(), key=lambda kv: -kv[1])


def delivered_count(metrics_text: str, channel: str = "webhook") -> float:
    """`gateway_deliveries_total{channel=..., outcome="delivered"}` in a Prometheus exposition."""
    for line in metrics_text.splitlines():
        if (line.startswith("gateway_deliveries_total{") and f'channel="{channel}"' in line
                and 'outcome="delivered"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:  # exited meanwhile
        return 0.0


@dataclass
class ActivitySample:
    """Tallies of `pg_stat_activity` rows of the bench database over many samples."""

    samples: int = 0
    states: Counter[str] = field(default_factory=Counter)  # on_cpu / wait:<type>:<event> / idle_in_tx / idle
    statements: Counter[str] = field(default_factory=Counter)  # what the active backends run

    def summary(self) -> dict[str, Any]:
        n = max(1, self.samples)
        busy = sum(v for k, v in self.states.items() if k != "idle")
        waits = Counter({k: v for k, v in self.states.items() if k.startswith("wait:")})
        return {
            "samples": self.samples,
            # mean number of backends in each state at any moment of the run
            "mean_on_cpu": self.states["on_cpu"] / n,
            "mean_waiting": sum(waits.values()) / n,
            "mean_idle_in_tx": self.states["idle_in_tx"] / n,
            "mean_idle": self.states["idle"] / n,
            "mean_busy": busy / n,
            "top_waits": [(k[5:], round(v / n, 2)) for k, v in waits.most_common(5)],
            "top_statements": [(k, round(v / n, 2)) for k, v in self.statements.most_common(6)],
        }


class PgWatch:
    """Watches the server on behalf of one bench database, over its own admin connection."""

    def __init__(self, database_url: str, admin_url: str = ADMIN_URL) -> None:
        self.database = database_url.rsplit("/", 1)[1]
        self.admin_url = admin_url
        self._conn: Any = None
        self._sampler: asyncio.Task[None] | None = None
        self._activity = ActivitySample()

    async def __aenter__(self) -> PgWatch:
        self._conn = await asyncpg.connect(self.admin_url, timeout=5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_sampling()
        if self._conn is not None:
            await self._conn.close()

    async def pids(self) -> set[int]:
        """Backends of the bench database plus the server's shared background processes."""
        rows = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE (datname = $1 OR datname IS NULL) AND pid <> pg_backend_pid()",
            self.database)
        return {int(r["pid"]) for r in rows}

    async def cpu_snapshot(self) -> dict[int, float]:
        return {pid: _cpu_or_zero(pid) for pid in await self.pids()}

    async def cpu_since(self, before: dict[int, float]) -> float:
        """CPU-seconds of the server's processes since `before`; a process born since counts in full."""
        after = await self.cpu_snapshot()
        return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())

    # ---- pg_stat_activity sampling during a run
    def start_sampling(self, interval: float = 0.1) -> None:
        self._activity = ActivitySample()
        self._sampler = asyncio.create_task(self._sample(interval))

    async def stop_sampling(self) -> dict[str, Any]:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        return self._activity.summary()

    async def _sample(self, interval: float) -> None:
        sql = ("SELECT state, wait_event_type, wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS q"
               " FROM pg_stat_activity"
               " WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
        while True:
            rows = await self._conn.fetch(sql, self.database)
            self._activity.samples += 1
            for r in rows:
                state, wtype, wevent = r["state"], r["wait_event_type"], r["wait_event"]
                if state == "active":
                    key = "on_cpu" if wtype is None else f"wait:{wtype}:{wevent}"
                    self._activity.statements[str(r["q"])] += 1
                elif state and state.startswith("idle in transaction"):
                    key = "idle_in_tx"
                else:
                    key = "idle"  # waiting for the daemon to send the next statement
                self._activity.states[key] += 1
            await asyncio.sleep(interval)


async def server_info(admin_url: str = ADMIN_URL) -> dict[str, str]:
    """Version and the durability settings of the server ({} when it does not answer)."""
    try:
        conn = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return {}
    try:
        out = {"version": str(await conn.fetchval("SHOW server_version"))}
        for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections"):
            out[name] = str(await conn.fetchval(f"SHOW {name}"))
        return out
    finally:
        await conn.close()
