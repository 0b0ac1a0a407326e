"""The queue cases (issue 9 items 3 and 5): one daemon with a large backlog, no bare side.

- `priority`: 100,000 yellow deliveries queued, every non-reserved dispatch slot busy on a
  receiver that answers them after 2 s; then, each repeat, an actual red warning to one unit
  (2,500 fast deliveries on the same URLs). Measures the red's 202 -> its first arrival at the
  receiver, how many yellow were still queued then, and the red's 202 -> its last arrival.
- `memory`: 10 consecutive fan-outs of 10,000 deliveries to a receiver that answers only after
  5 s (so nearly all 100,000 stay pending); the daemon's RSS after each is accepted and at the
  end, its peak (VmHWM), and each fan-out's POST -> 202. `memory_down`: the same to a closed
  local port (every attempt refused, then the circuit breaker: the retry path).
- `big`: one event of 100,000 deliveries per repeat, each on a fresh daemon: POST -> 202, and
  the daemon's peak RSS (VmHWM, reset just before the POST) right after the 202, i.e. while
  accepting it (issue 19 item 5); the start-up peak (loading the roster) separately.

Slowness is keyed on the body (`"id":"<event id>"`, the receiver's tags), so the slow and the
fast events use the very same endpoint URLs, i.e. the same origin and per-origin slots.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bench.cases import CONCURRENCY, Case
from bench.children import BenchError
from bench.procstat import cpu_seconds, memory, reset_peak
from tests.support.daemon import TOKENS, Daemon

if TYPE_CHECKING:
    from bench.harness import Bench

# the daemon keeps concurrency // 8 slots for priority 0 (gateway/dispatcher.py `_reserve`)
RESERVED = max(1, CONCURRENCY // 8)
LOW_SLOTS = CONCURRENCY - RESERVED
YELLOW_SLOW = 2.0  # seconds the receiver takes to answer a backlog delivery
RED_UNIT = "zezhou_ecology_branch"  # the red warning's audience: one unit, its 2,500 endpoints
FIRST_TARGET_MS = 100.0

FANOUTS = 10
MEMORY_SLOW = 5.0  # under the webhook timeout (10 s) and the stop grace (10 s): no retries, no breaker
SETTLE = 5.0  # seconds after the last fan-out before the final RSS sample

BIG_SLOW = 1.0  # the big event's deliveries are answered after 1 s: dispatch busy, the daemon's stop quick
BIG_ACCEPT_TARGET_S, BIG_PEAK_TARGET_MB = 1.5, 150.0  # issue 19

Runner = Callable[["Bench", Daemon, Case, int, dict[str, Any], Callable[[], float]], Awaitable[None]]


def _needle(event_id: str) -> str:
    """How the event's id appears in every webhook body (the event JSON is compact)."""
    return f'"id":"{event_id}"'


async def priority_case(bench: Bench, d: Daemon, case: Case, repeats: int, result: dict[str, Any],
                        left: Callable[[], float]) -> None:
    await bench.rx("reset", fail_rate=0, seed=0)
    yellow = f"bench-{case.name}-yellow"
    await bench.rx("tag", post=True, name="yellow", match=_needle(yellow), slow=YELLOW_SLOW)
    t0 = time.monotonic()
    answer = await bench.post_event(d, yellow, level="yellow")
    result["backlog_accept_s"] = time.monotonic() - t0
    if answer["deliveries"] != case.deliveries:
        raise BenchError(f"expected {case.deliveries} yellow deliveries, the gateway planned {answer['deliveries']}")
    rng = random.Random(case.name)
    for r in range(repeats):
        # the non-reserved slots full of slow yellow sends (they refill in batches, so not always all)
        busy = await bench.rx("tag", name="yellow", inflight=LOW_SLOTS * 3 // 4, timeout=min(30.0, left()))
        if not busy["ok"]:
            raise BenchError(f"the yellow backlog never filled the slots: {busy}")
        await asyncio.sleep(rng.uniform(0, YELLOW_SLOW))  # a different phase of the 2 s cycle each time
        red = f"bench-{case.name}-red-{r}"
        tag = f"red{r}"
        await bench.rx("tag", post=True, name=tag, match=_needle(red))
        before = await bench.rx("tag", name="yellow")
        t_post = time.monotonic()
        answer = await bench.post_event(d, red, level="red", status="actual", audience={"units": [RED_UNIT]})
        t_202 = time.monotonic()
        n = int(answer["deliveries"])
        first = await bench.rx("tag", name=tag, arrived=1, timeout=min(30.0, left()))
        if not first["ok"]:
            raise BenchError(f"no delivery of the red warning {red} arrived within 30 s")
        done = await bench.rx("tag", name=tag, answered=n, timeout=min(120.0, left()))
        if not done["ok"]:
            raise BenchError(f"only {done['answered']}/{n} deliveries of {red} answered within 120 s")
        at = first["at_first"]
        y = at["yellow"]
        result["gateway_runs"].append({
            "delivered": done["answered"], "expected": n,
            "red_intake_ms": (t_202 - t_post) * 1000,
            "post_first_ms": (first["first_at"] - t_post) * 1000,
            "from_202_first_ms": (first["first_at"] - t_202) * 1000,
            "from_202_last_s": done["last_at"] - t_202,
            "yellow_inflight_at_post": before["inflight"],
            "yellow_queued_at_first": case.deliveries - y["arrived"],
            "yellow_inflight_at_first": y["arrived"] - y["answered"],
            "requests_in_flight_at_first": at["in_flight"],
        })
    final = await bench.rx("tag", name="yellow")
    result["yellow_answered_total"] = final["answered"]
    result["first_target_ms"] = FIRST_TARGET_MS
    result["within_target_runs"] = sum(1 for x in result["gateway_runs"]
                                       if x["from_202_first_ms"] <= FIRST_TARGET_MS)


async def memory_case(bench: Bench, d: Daemon, case: Case, repeats: int, result: dict[str, Any],
                      left: Callable[[], float]) -> None:
    assert d.proc is not None
    pid = d.proc.pid
    await bench.rx("reset", fail_rate=0, seed=0)
    prefix = f"bench-{case.name}-"
    await bench.rx("tag", post=True, name="all", match=f'"id":"{prefix}', slow=MEMORY_SLOW)
    rss = [memory(pid).rss_mb]  # idle, then after each fan-out's 202
    accept: list[float] = []
    started, cpu0 = time.monotonic(), cpu_seconds(pid)
    for i in range(1, FANOUTS + 1):
        t0 = time.monotonic()
        answer = await bench.post_event(d, f"{prefix}{i}")
        accept.append(time.monotonic() - t0)
        rss.append(memory(pid).rss_mb)
        if answer["deliveries"] != case.deliveries:
            raise BenchError(f"expected {case.deliveries} deliveries, the gateway planned {answer['deliveries']}")
    await asyncio.sleep(min(SETTLE, left()))
    end, cpu = memory(pid), cpu_seconds(pid) - cpu0
    by_status = await status_totals(bench, d)
    async with bench.http.get(f"{d.url}/metrics") as r:
        attempts = sum(float(line.rsplit(" ", 1)[1]) for line in (await r.text()).splitlines()
                       if line.startswith("gateway_delivery_attempts_total{"))
    sent = await bench.rx("tag", name="all")
    result["memory"] = {
        "rss_idle_mb": rss[0], "rss_after_mb": rss[1:], "rss_end_mb": end.rss_mb, "peak_rss_mb": end.peak_rss_mb,
        "growth_1_to_last_mb": rss[-1] - rss[1],
        "accept_s": accept, "accept_median_s": statistics.median(accept),
        "seconds": time.monotonic() - started, "cpu_s": cpu, "attempts": attempts,
        "by_status": by_status, "receiver_arrived": sent["arrived"], "receiver_answered": sent["answered"],
    }


async def status_totals(bench: Bench, d: Daemon) -> dict[str, int]:
    """Deliveries by status, summed over every event in the store."""
    async with bench.http.get(f"{d.url}/v1/events", params={"limit": "500"},
                              headers={"Authorization": f"Bearer {TOKENS['reader'][0]}"}) as r:
        events = (await r.json())["events"]
    totals: dict[str, int] = {}
    for e in events:
        for status, n in e["summary"]["by_status"].items():
            totals[status] = totals.get(status, 0) + int(n)
    return totals


async def big_case(bench: Bench, d: Daemon, case: Case, repeats: int, result: dict[str, Any],
                   left: Callable[[], float]) -> None:
    """One event of `case.deliveries` per repeat, each on a fresh daemon and store (so VmHWM read
    right after the 202 is the peak while accepting it); the receiver answers it after 1 s, so
    dispatch stays at its 50 slots meanwhile and the stop between repeats is quick."""
    for r in range(repeats):
        if r:
            await d.stop(timeout=min(30.0, left()))
            shutil.rmtree(d.root / "var", ignore_errors=True)
            await d.start()
        assert d.proc is not None
        pid = d.proc.pid
        event_id = f"bench-{case.name}-{r}"
        await bench.rx("reset", fail_rate=0, seed=r)
        await bench.rx("tag", post=True, name="big", match=_needle(event_id), slow=BIG_SLOW)
        idle, cpu0 = memory(pid), cpu_seconds(pid)
        # VmHWM counts from start-up (loading a roster of 100,000 endpoints peaks too): reset
        # it, so the peak read after the 202 is the one while accepting
        reset = reset_peak(pid)
        t0 = time.monotonic()
        answer = await bench.post_event(d, event_id)
        accept = time.monotonic() - t0
        after, cpu = memory(pid), cpu_seconds(pid) - cpu0
        if answer["deliveries"] != case.deliveries:
            raise BenchError(f"expected {case.deliveries} deliveries, the gateway planned {answer['deliveries']}")
        result["gateway_runs"].append({
            "delivered": answer["deliveries"], "expected": case.deliveries, "accept_s": accept,
            "rss_idle_mb": idle.rss_mb, "rss_after_mb": after.rss_mb, "peak_rss_mb": after.peak_rss_mb,
            "peak_growth_mb": after.peak_rss_mb - idle.rss_mb, "accept_cpu_s": cpu,
            "startup_peak_rss_mb": idle.peak_rss_mb, "peak_since_startup": not reset,
        })
    result["accept_target_s"], result["peak_target_mb"] = BIG_ACCEPT_TARGET_S, BIG_PEAK_TARGET_MB


QUEUED: dict[str, Runner] = {"priority": priority_case, "memory": memory_case, "big": big_case}
