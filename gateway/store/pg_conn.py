"""PostgreSQL plumbing: the typed seam over asyncpg, infrastructure retries and the listener.

asyncpg ships no type information, so the few connection methods the store uses are declared
here as a Protocol; everything else in the pg_* modules is typed against it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from gateway.logs import get as get_logger

log = get_logger("gateway.store.postgres")

# NOTIFY channel: record_event and add_deliveries signal here when new work is committed.
CHANNEL = "gateway_outbox"

# pg_advisory_xact_lock keys (one 64-bit namespace per database): arbitrary but fixed, so every
# instance of the gateway serialises on the same ones.
LOCK_MIGRATE = 0x6761_7465_0001
LOCK_AUDIT = 0x6761_7465_0002


class Record(Protocol):
    """An asyncpg.Record, as far as the store uses it."""

    def __getitem__(self, key: str | int) -> Any: ...

    def items(self) -> Iterable[tuple[str, Any]]: ...


class Conn(Protocol):
    """The subset of asyncpg.Connection the store uses."""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...

    async def executemany(self, command: str, args: Iterable[Sequence[Any]], *,
                          timeout: float | None = None) -> None: ...

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Record]: ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Record | None: ...

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any: ...

    async def copy_records_to_table(self, table_name: str, *, records: Iterable[Sequence[Any]],
                                    columns: Sequence[str]) -> str: ...


def as_dict(r: Record) -> dict[str, Any]:
    return dict(r.items())


def affected(status: str) -> int:
    """Rows touched, from a command tag such as 'UPDATE 3' or 'INSERT 0 1'."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


# What a restart, failover or network blip looks like from asyncpg. A retry of the whole
# transaction is safe for every store verb: each one is a single transaction guarded by
# compare-and-set clauses, so a commit that did land before the connection broke is seen on the
# second try (a finish reports the lease lost, a record_event answers Duplicate with same_body).
_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.exceptions.AdminShutdownError,  # 57P01: server terminated the connection
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    OSError,  # refused, reset, timed out (TimeoutError is an OSError)
)
# The server rolled the transaction back (two sweeps or finishes crossed); the connection is fine.
_ROLLED_BACK: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


def connection_broken(exc: BaseException) -> bool:
    """The connection itself is unusable: it must not go back to the pool."""
    if isinstance(exc, _ROLLED_BACK):
        return False
    if isinstance(exc, _TRANSIENT):
        return True
    # a pooled connection the server closed under us, noticed before a query was sent
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return True
    # the protocol state left behind when the server shut the connection during an operation
    # ("cannot switch to state 15; another operation is in progress"), seen across restarts
    return isinstance(exc, asyncpg.exceptions.InternalClientError)


def is_transient(exc: BaseException) -> bool:
    """True for infrastructure failures a short retry can cure; never for SQL or data errors."""
    return isinstance(exc, _ROLLED_BACK) or connection_broken(exc)


def retrying(budget: float) -> AsyncRetrying:
    """Short bounded retries for infrastructure only (design.md section 4): a PostgreSQL restart
    takes a few seconds, so `budget` covers one; then the error reaches the caller."""
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.2),
        stop=stop_after_delay(budget),
        reraise=True,
        before_sleep=lambda rs: log.warning(
            "store_retrying", attempt=rs.attempt_number,
            error=type(rs.outcome.exception()).__name__ if rs.outcome else None),
    )


class Listener:
    """A dedicated LISTEN connection that sets an event on every NOTIFY; re-established lazily
    after the server or the network drops it."""

    def __init__(self, connect: Callable[[], Any], *, connect_timeout: float = 2.0) -> None:
        self._connect = connect
        self._timeout = connect_timeout
        self._conn: Any = None
        self.notified = asyncio.Event()

    @property
    def alive(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> bool:
        """Connect and LISTEN if not connected; False (never raises) while the server is away."""
        if self.alive:
            return True
        await self.close()
        conn: Any = None
        try:
            conn = await asyncio.wait_for(self._connect(), self._timeout)
            await conn.add_listener(CHANNEL, self._on_notify)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if conn is not None:
                conn.terminate()
            log.warning("store_listener_unavailable", error=type(exc).__name__)
            return False
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        # anything committed while we were not listening would otherwise wait for the next poll
        self.notified.set()
        return True

    def _on_notify(self, *_: object) -> None:
        self.notified.set()

    def _on_terminated(self, *_: object) -> None:
        self.notified.set()  # wake the waiter so it notices and reconnects

    async def wait(self, timeout: float) -> None:
        """Return when a notification arrives or after `timeout` seconds."""
        if not await self.ensure():
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.notified.wait(), timeout)
        self.notified.clear()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await asyncio.wait_for(conn.close(), self._timeout)
        if conn is not None:
            conn.terminate()
