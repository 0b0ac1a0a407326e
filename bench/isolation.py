"""Isolation from a dead receiver's backlog: live traffic must not slow down because another
origin, whose circuit is open, has a large queue.

    python -m bench.isolation [--backlog 100000] [--live 4000] [--repeats 3]

In-process on purpose (no HTTP intake, so the figure is the dispatcher's alone): the real
`Dispatcher`, `SqliteStore` (a fresh file) and `WebhookChannel`, sending to the bench receiver
(`bench.receiver`, its own process, signatures checked). Each repeat first runs the live
deliveries with no backlog (baseline), then queues `--backlog` deliveries to a closed local
port, waits until that origin's circuit is open, and runs the live deliveries again. Reports
the medians and their ratio (1.0 = the backlog costs nothing). Everything stays on 127.0.0.1;
every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from channels.signing import generate_secret
from channels.webhook import WebhookChannel
from gateway import logs
from gateway.dispatcher import ChannelSlot, Dispatcher
from gateway.metrics import Metrics
from gateway.store.base import NewEvent, PlannedDelivery
from gateway.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 50


def _event(eid: str) -> NewEvent:
    return NewEvent(id=eid, body_hash="h", data={}, type="warning.issued", level="orange", status="actual",
                    supersedes=None, source="bench", principal="bench", accepted_at=time.time(),
                    valid_until=None, answer={}, roster_version="r", policy_version="p")


def _deliveries(eid: str, origin: str, n: int) -> list[PlannedDelivery]:
    return [PlannedDelivery(id=f"{eid}-{i}", unit_id=f"u{i % 40}", unit_name="单位", channel="webhook",
                            address=f"{origin}/hook/u{i % 40}/{i}", endpoint_key=f"webhook:{origin}",
                            text="文本", payload='{"k": 1}', max_attempts=8, priority=2,
                            deadline=time.time() + 3600) for i in range(n)]


async def _delivered(store: SqliteStore, eid: str) -> int:
    return int(await store._run(lambda c: c.execute(  # a bench reading its own store file
        "SELECT COUNT(*) FROM deliveries WHERE event_id=? AND status='delivered'", (eid,)).fetchone()[0]))


async def _live_run(store: SqliteStore, d: Dispatcher, eid: str, origin: str, n: int) -> float:
    """Seconds from commit to every live delivery recorded delivered.

    Raises:
        TimeoutError: not all delivered within 120 s.
    """
    t0 = time.perf_counter()
    await store.record_event(_event(eid), _deliveries(eid, origin, n), [])
    d.wake()
    async with asyncio.timeout(120):
        while await _delivered(store, eid) < n:  # noqa: ASYNC110 - the store has no push
            await asyncio.sleep(0.02)
    return time.perf_counter() - t0


async def _repeat(k: int, secret: str, live: str, dead: str, backlog: int, n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        store = SqliteStore(Path(tmp) / "outbox.db")
        await store.open()
        channel = WebhookChannel(secret, per_endpoint_concurrency=CONCURRENCY)
        d = Dispatcher(store, {"webhook": ChannelSlot(channel, per_endpoint=CONCURRENCY, timeout=5.0)},
                       Metrics(), concurrency=CONCURRENCY)
        runner = asyncio.create_task(d.run())
        try:
            base = await _live_run(store, d, f"base{k}", live, n)
            await store.record_event(_event(f"dead{k}"), _deliveries(f"dead{k}", dead, backlog), [])
            d.wake()
            async with asyncio.timeout(30):  # refused connections open the circuit quickly
                while not channel.open_circuits():  # noqa: ASYNC110 - nothing to await on
                    await asyncio.sleep(0.05)
            with_backlog = await _live_run(store, d, f"live{k}", live, n)
        finally:
            await d.stop(1.0)
            await runner
            await channel.aclose()
            await store.close()
    return base, with_backlog


async def run(backlog: int, n: int, repeats: int) -> dict[str, Any]:
    """Returns the figures. Raises TimeoutError when a run does not complete in time."""
    secret = generate_secret()
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.receiver", "--port", "0", cwd=ROOT,
        env={**os.environ, "GATEWAY_WEBHOOK_SECRET": secret}, stdout=asyncio.subprocess.PIPE)
    try:
        assert receiver.stdout is not None
        port = int((await asyncio.wait_for(receiver.stdout.readline(), 30)).split()[1])
        with socket.socket() as s:  # a port bound and released: connections to it are refused
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        runs = [await _repeat(k, secret, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dead_port}",
                              backlog, n) for k in range(repeats)]
    finally:
        receiver.terminate()
        await asyncio.wait_for(receiver.wait(), 10)
    base = statistics.median(r[0] for r in runs)
    loaded = statistics.median(r[1] for r in runs)
    return {"live_deliveries": n, "backlog_to_dead_origin": backlog, "repeats": repeats,
            "without_backlog_s": round(base, 3), "with_backlog_s": round(loaded, 3),
            "ratio": round(loaded / base, 2), "runs": [[round(a, 3), round(b, 3)] for a, b in runs]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--live", type=int, default=4_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logs.configure(json_lines=True, level="warning")  # as the daemon: no line per success
    try:
        import uvloop  # the daemon's loop where it is installed
    except ImportError:
        pass
    else:
        uvloop.install()
    print(json.dumps(asyncio.run(run(args.backlog, args.live, args.repeats)), indent=2))


if __name__ == "__main__":
    main()
