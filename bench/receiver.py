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
- `POST /_bench/tag?name=N&match=TEXT&slow=S`: count the requests whose body contains TEXT
  (e.g. `"id":"<event id>"`) under tag N, and answer them after S seconds (default 0); the
  first arrival of a tag snapshots every other tag's counts and the requests in flight.
- `GET /_bench/tag?name=N&arrived=K&answered=M&inflight=F&timeout=T`: answer the tag's counts
  once at least K of its requests arrived, M were answered and F are in flight.

A request without a webhook-id (Alertmanager, Apprise: `bench.compare`) is recorded under
`<path>#<sha1 of the body>` instead, so a retry is the same delivery and distinct ones differ.

`reset` forgets the tags too. Tags serve the queue cases (`priority`, `memory`): slowness keyed
on the body, so one event's deliveries are slow and another's fast on the same URLs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import dataclasses
import hashlib
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.receiver import Receiver

_CONTROL = "/_bench/"
_FAIL_PREFIX = "/hook"
# extra answer delay of the request being handled (a tag's `slow`), read by `_plan`
_TAG_DELAY: contextvars.ContextVar[float] = contextvars.ContextVar("tag_delay", default=0.0)


@dataclass(slots=True)
class Tag:
    """Requests whose body contains `needle`: counted, optionally answered `slow` seconds late."""

    needle: bytes
    slow: float = 0.0
    arrived: int = 0
    answered: int = 0
    first_at: float | None = None  # time.monotonic() of the first arrival
    last_at: float | None = None  # ... and of the latest
    at_first: dict[str, Any] = field(default_factory=dict)  # the other tags and in-flight then

    def state(self) -> dict[str, Any]:
        return {"arrived": self.arrived, "answered": self.answered, "inflight": self.arrived - self.answered,
                "first_at": self.first_at, "last_at": self.last_at, "at_first": self.at_first}


class BenchReceiver(Receiver):
    """A Receiver that can fail a random share of requests and summarise a run cheaply."""

    def __init__(self, secret: str | None, *, fail_rate: float = 0.0, seed: int = 0) -> None:
        super().__init__(secret)
        self.fail_rate = fail_rate
        self._rng = random.Random(seed)
        self._scanned = 0
        self._first_ok: dict[str, float] = {}
        self._ok_count: Counter[str] = Counter()
        self.tags: dict[str, Tag] = {}

    def reset(self, fail_rate: float, seed: int) -> None:
        self.tags = {}
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
        status, retry_after, delay = super()._plan(path)
        return status, retry_after, delay + _TAG_DELAY.get()

    # Overrides Receiver._handle to add the control routes and the tags.
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(_CONTROL):
            return await self._control(request)
        if not self.tags or not request.path.startswith(_FAIL_PREFIX):
            return await super()._handle(request)
        arrived = time.monotonic()
        body = await request.read()  # aiohttp keeps the bytes: Receiver._handle reads them again
        hits = [t for t in self.tags.values() if t.needle in body]
        for t in hits:
            t.arrived += 1
            t.last_at = arrived
            if t.first_at is None:
                t.first_at = arrived
                t.at_first = {"in_flight": self.in_flight,
                              **{n: {"arrived": o.arrived, "answered": o.answered}
                                 for n, o in self.tags.items() if o is not t}}
        token = _TAG_DELAY.set(max((t.slow for t in hits), default=0.0))
        try:
            return await super()._handle(request)
        finally:
            _TAG_DELAY.reset(token)
            for t in hits:
                t.answered += 1
            self._changed.set()  # wake the waiters on `answered`

    async def _control(self, request: web.BaseRequest) -> web.StreamResponse:
        op = request.path[len(_CONTROL):]
        q = request.query
        if op == "reset":
            self.reset(float(q.get("fail_rate", "0")), int(q.get("seed", "0")))
            return web.json_response({"ok": True})
        if op == "tag":
            return await self._tag(request)
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

    # Overrides Receiver._record: a request without a webhook-id (Alertmanager, Apprise) is keyed
    # on its path and body, so a retry counts as the same delivery and distinct ones stay distinct.
    def _record(self, request: web.BaseRequest, body: bytes, at: float, status: int,
                signature_ok: bool | None) -> None:
        super()._record(request, body, at, status, signature_ok)
        last = self.received[-1]
        if not last.webhook_id:
            key = f"{last.path}#{hashlib.sha1(body).hexdigest()[:16]}"
            self.received[-1] = dataclasses.replace(last, webhook_id=key)

    async def _tag(self, request: web.BaseRequest) -> web.StreamResponse:
        q = request.query
        name = q["name"]
        if request.method == "POST":
            self.tags[name] = Tag(q["match"].encode(), float(q.get("slow", "0")))
            return web.json_response({"ok": True})
        tag = self.tags.get(name)
        if tag is None:
            return web.json_response({"error": f"no tag {name}"}, status=404)
        arrived, answered, inflight = (int(q.get(k, "0")) for k in ("arrived", "answered", "inflight"))

        def met(_: object) -> bool:
            return tag.arrived >= arrived and tag.answered >= answered and tag.arrived - tag.answered >= inflight
        try:
            await self.wait_for(met, timeout=float(q.get("timeout", "60")))
        except TimeoutError:
            return web.json_response({"ok": False, **tag.state()})
        return web.json_response({"ok": True, **tag.state()})


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
