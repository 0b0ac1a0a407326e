"""The benchmark's webhook receiver process: `tests.support.receiver.Receiver` plus control routes.

    GATEWAY_WEBHOOK_SECRET=whsec_... python -m bench.receiver --port 0 [--fail-rate 0.2 --seed 1]

prints `READY <port>` and serves until SIGTERM. It verifies every signature (a bad one is
answered 401 and counted) and records arrivals with `time.monotonic()`, which on Linux is one
system-wide clock, so the harness can compare it with its own and the bare loop's timestamps.

Control routes (all under `/_bench/`, never counted as deliveries):

- `POST /_bench/reset?fail_rate=0.2&seed=N`: forget every record, set the injected 503 rate.
- `GET /_bench/wait?count=K&timeout=T`: answer once K distinct webhook-ids got a 2xx.
- `GET /_bench/summary`: counts, duplicates and the first 2xx arrival time of every id.
- `GET /_bench/bodies`: the distinct bodies received and which path got which (to let the
  bare loop post exactly the bytes the gateway sent).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
from collections import Counter

from aiohttp import web

from tests.support.receiver import Receiver

_CONTROL = "/_bench/"
_FAIL_PREFIX = "/hook"


class BenchReceiver(Receiver):
    """A Receiver that can fail a random share of requests and summarise a run cheaply."""

    def __init__(self, secret: str | None, *, fail_rate: float = 0.0, seed: int = 0) -> None:
        super().__init__(secret)
        self.fail_rate = fail_rate
        self._rng = random.Random(seed)
        self._scanned = 0
        self._first_ok: dict[str, float] = {}
        self._ok_count: Counter[str] = Counter()

    def reset(self, fail_rate: float, seed: int) -> None:
        self.received.clear()
        self._scanned = 0
        self._first_ok = {}
        self._ok_count = Counter()
        self.fail_rate = fail_rate
        self._rng = random.Random(seed)

    def _scan(self) -> int:
        """Fold new records into the per-id tallies (incremental: O(1) per request)."""
        records = self.received
        for r in records[self._scanned:]:
            if 200 <= r.status < 300:
                self._ok_count[r.webhook_id] += 1
                self._first_ok.setdefault(r.webhook_id, r.at)
        self._scanned = len(records)
        return len(self._first_ok)

    # Overrides Receiver._plan: an injected failure comes before any scripted answer.
    def _plan(self, path: str) -> tuple[int, str | None, float]:
        if self.fail_rate > 0 and path.startswith(_FAIL_PREFIX) and self._rng.random() < self.fail_rate:
            return 503, None, self.delay
        return super()._plan(path)

    # Overrides Receiver._handle to add the control routes.
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(_CONTROL):
            return await self._control(request)
        return await super()._handle(request)

    async def _control(self, request: web.BaseRequest) -> web.StreamResponse:
        op = request.path[len(_CONTROL):]
        q = request.query
        if op == "reset":
            self.reset(float(q.get("fail_rate", "0")), int(q.get("seed", "0")))
            return web.json_response({"ok": True})
        if op == "wait":
            count = int(q["count"])
            try:
                await self.wait_for(lambda r: self._scan() >= count, timeout=float(q.get("timeout", "60")))
            except TimeoutError:
                return web.json_response({"ok": False, "delivered": self._scan()})
            return web.json_response({"ok": True, "delivered": self._scan()})
        if op == "summary":
            self._scan()
            statuses = Counter(r.status for r in self.received if r.path.startswith(_FAIL_PREFIX))
            return web.json_response({
                "received": sum(statuses.values()),
                "delivered": len(self._first_ok),
                # the same webhook-id answered 2xx more than once: a real duplicate
                "dup_2xx": sum(n - 1 for n in self._ok_count.values() if n > 1),
                "bad_signatures": sum(1 for r in self.received if r.signature_ok is False),
                "statuses": {str(k): v for k, v in statuses.items()},
                "arrivals": sorted(self._first_ok.values()),
                "first_at": min((r.at for r in self.received), default=None),
            })
        if op == "bodies":
            bodies: dict[bytes, int] = {}
            paths: dict[str, int] = {}
            for r in self.received:
                if r.path.startswith(_FAIL_PREFIX) and r.path not in paths:
                    paths[r.path] = bodies.setdefault(r.body, len(bodies))
            return web.json_response({"bodies": [b.decode() for b in bodies], "paths": paths})
        return web.json_response({"error": f"unknown control {op}"}, status=404)


async def _serve(host: str, port: int, secret: str | None, fail_rate: float, seed: int) -> None:
    receiver = BenchReceiver(secret, fail_rate=fail_rate, seed=seed)
    await receiver.start(host, port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    print(f"READY {receiver.port}", flush=True)
    try:
        await stopping.wait()
    finally:
        await receiver.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark receiver until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m bench.receiver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on READY)")
    parser.add_argument("--secret", default=os.environ.get("GATEWAY_WEBHOOK_SECRET"),
                        help="whsec_... secret (default: $GATEWAY_WEBHOOK_SECRET; none: no verification)")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of /hook requests answered 503")
    parser.add_argument("--seed", type=int, default=0, help="seed of the failure draw")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.secret, args.fail_rate, args.seed))


if __name__ == "__main__":
    main()
