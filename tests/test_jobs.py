"""The one scheduler of periodic work: jobs run at start and again after each interval, a failed
round neither ends its job nor holds up another, and stop ends them all."""

from __future__ import annotations

import asyncio

import pytest

from gateway.jobs.scheduler import Scheduler


async def test_jobs_run_again_and_a_failing_one_never_stops_the_others() -> None:
    jobs = Scheduler()
    ran: list[str] = []
    errors: list[Exception] = []

    async def steady() -> None:
        ran.append("steady")

    async def broken() -> None:
        ran.append("broken")
        raise RuntimeError("round failed")

    jobs.every("steady", 0.01, steady)
    jobs.every("broken", lambda: 0.01, broken, on_error=errors.append)
    jobs.start()
    await asyncio.sleep(0.2)
    await jobs.stop()
    assert ran.count("steady") >= 3
    assert ran.count("broken") >= 3  # run again after each failure
    assert errors and all(isinstance(e, RuntimeError) for e in errors)
    after = len(ran)
    await asyncio.sleep(0.05)
    assert len(ran) == after  # stopped: nothing runs any more


async def test_a_name_is_registered_once_and_only_before_start() -> None:
    jobs = Scheduler()

    async def nothing() -> None:
        return None

    jobs.every("one", 1.0, nothing)
    with pytest.raises(ValueError, match="twice"):
        jobs.every("one", 1.0, nothing)
    jobs.start()
    with pytest.raises(ValueError, match="before the scheduler starts"):
        jobs.every("two", 1.0, nothing)
    await jobs.stop()
    assert [j.name for j in jobs.jobs] == ["one"]
