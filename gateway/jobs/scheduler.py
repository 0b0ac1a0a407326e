"""One scheduler for the daemon's periodic work.

Each job is one round of one use case (escalation steps, reminders, draft expiry, receipt
timeouts, a CAP feed poll, ...), run again `every` seconds after its round ends. Jobs are
independent: one that fails or is slow never holds up another. A failed round is logged
(under the job's own event name) and the job runs again at its next time; it never stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.logs import get as get_logger

log = get_logger("gateway.jobs")

Interval = float | Callable[[], float]
"""Seconds between rounds: a number, or read before each wait (a setting that may change)."""


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    run: Callable[[], Awaitable[Any]]
    every: Interval
    failed: str  # the log event of a failed round
    on_error: Callable[[Exception], None] | None = None  # instead of that log (its own log and metric)

    def interval(self) -> float:
        return self.every() if callable(self.every) else self.every


class Scheduler:
    """Runs registered jobs, each in its own task, from `start` until `stop`."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def jobs(self) -> tuple[Job, ...]:
        return tuple(self._jobs)

    def every(self, name: str, every: Interval, run: Callable[[], Awaitable[Any]], *, failed: str | None = None,
              on_error: Callable[[Exception], None] | None = None) -> None:
        """Register `run` to go at start and then `every` seconds after each round. A failed
        round is logged as `failed` (default `<name>_failed`), or handed to `on_error` (called
        within the `except`, so it may log the exception itself).

        Raises:
            ValueError: a job of that name is registered already, or the scheduler runs.
        """
        if any(j.name == name for j in self._jobs):
            raise ValueError(f"job {name!r} is registered twice")
        if self._tasks:
            raise ValueError("jobs are registered before the scheduler starts")
        self._jobs.append(Job(name, run, every, failed or f"{name}_failed", on_error))

    def start(self) -> None:
        """Start every registered job (from within the running event loop)."""
        self._tasks = [asyncio.create_task(self._loop(job), name=f"job:{job.name}") for job in self._jobs]

    async def stop(self) -> None:
        """Cancel every job and wait until each has ended."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _loop(self, job: Job) -> None:
        while True:
            try:
                await job.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed round must not end the job: log it, run again
                if job.on_error is not None:
                    job.on_error(exc)
                else:
                    log.exception(job.failed, job=job.name)
            await asyncio.sleep(job.interval())
