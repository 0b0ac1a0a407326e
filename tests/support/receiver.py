"""A local webhook receiver for tests and benchmarks: verifies signatures, records requests.

In-process, in the test's event loop::

    async with Receiver(secret) as receiver:
        receiver.script("/flaky", status=503, times=2)
        ...  # send to receiver.url("/flaky/1")
        await receiver.wait_for(lambda r: "d1" in r.delivered_ids(), timeout=5)

As a process (benchmarks, the real daemon's integration tests)::

    python -m tests.support.receiver --port 0 --secret whsec_... [--delay 0.05]

prints `READY <port>` once listening and serves until SIGTERM/SIGINT; `GET /_stats` answers
JSON counts, since the records themselves stay in that process.
"""

from __future__ import annotations

import argparse
import asyncio
import json as jsonlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from channels.signing import SignatureError, secret_key, verify

# Status recorded when the client went away (or the receiver stopped) before an answer: nginx's
# "client closed request", so it can never be mistaken for a real answer.
CLIENT_GONE = 499
# stop() waits this long for in-flight handlers (e.g. a scripted delay) before cancelling them.
_SHUTDOWN_GRACE = 0.25
_STATS_PATH = "/_stats"


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the receiver saw it; `status` is what it answered (499: never answered)."""

    path: str
    webhook_id: str
    timestamp: int
    body: bytes
    json: Any
    at: float
    status: int
    signature_ok: bool | None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Script:
    prefix: str
    status: int
    remaining: int  # -1: forever
    retry_after: str | None
    delay: float


class Receiver:
    """Standard Webhooks receiver on a local port; answers 200 unless scripted otherwise."""

    def __init__(self, secret: str | None = None, *, delay: float = 0.0) -> None:
        """Create a stopped receiver; with `secret`, bad signatures are answered 401.

        Raises:
            ValueError: the secret is malformed.
        """
        if secret is not None:
            secret_key(secret)
        self.secret = secret
        self.delay = delay
        self.received: list[Received] = []
        self.in_flight = 0
        self._scripts: list[_Script] = []
        self._slow: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._runner: web.ServerRunner | None = None
        self._host = ""
        self._port = 0

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on `host:port` (0 picks a free port).

        Raises:
            RuntimeError: already started.
            OSError: the port cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError("receiver already started")
        # Low-level server: no router and no access log, so it keeps up with benchmark load.
        # handler_cancellation: a client that times out must not leave a handler sleeping.
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening and close connections; in-flight requests are recorded as 499."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: not started.
        """
        if self._runner is None:
            raise RuntimeError("receiver not started")
        return self._port

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running receiver.

        Raises:
            RuntimeError: not started.
        """
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL for `path` on this receiver.

        Raises:
            RuntimeError: not started.
        """
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def script(
        self,
        path_prefix: str,
        *,
        status: int,
        times: int,
        retry_after: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` requests under `path_prefix` with `status` (-1: forever).

        Scripts are consumed in the order given, so successive calls queue up a sequence.
        """
        self._scripts.append(_Script(path_prefix, status, times, retry_after, delay))

    def slow(self, path_prefix: str, seconds: float) -> None:
        """Delay every answer under `path_prefix` by `seconds` (0 removes the delay)."""
        if seconds > 0:
            self._slow[path_prefix] = seconds
        else:
            self._slow.pop(path_prefix, None)

    def delivered_ids(self) -> set[str]:
        """webhook-ids answered with a 2xx at least once."""
        return {r.webhook_id for r in self.received if 200 <= r.status < 300}

    def count_by_id(self) -> Counter[str]:
        """How many requests arrived per webhook-id, whatever the answer (duplicates show > 1)."""
        return Counter(r.webhook_id for r in self.received)

    # `timeout` is part of the agreed test-support API, hence the ASYNC109 exemption.
    async def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float) -> None:
        """Wait until `predicate(self)` holds; re-checked as each request arrives and is recorded.

        Raises:
            TimeoutError: still false after `timeout` seconds; the message summarises traffic.
        """
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(self._describe_timeout(timeout)) from None

    def _describe_timeout(self, timeout: float) -> str:
        statuses = Counter(r.status for r in self.received)
        recent = ", ".join(f"{r.path} {r.webhook_id!r} -> {r.status}" for r in self.received[-5:])
        return (
            f"receiver condition not met within {timeout:g}s: {len(self.received)} requests "
            f"(statuses {dict(statuses)}), {self.in_flight} in flight; last: {recent or 'none'}"
        )

    def stats(self) -> dict[str, Any]:
        """Counts for benchmarks: requests, distinct delivered ids, duplicate arrivals, statuses."""
        per_id = self.count_by_id()
        return {
            "received": len(self.received),
            "delivered": len(self.delivered_ids()),
            "duplicates": sum(n - 1 for n in per_id.values() if n > 1),
            "statuses": {str(k): v for k, v in Counter(r.status for r in self.received).items()},
        }

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "GET" and request.path == _STATS_PATH:
            return web.json_response(self.stats())
        arrived = time.monotonic()
        self.in_flight += 1
        self._changed.set()  # waiters may be watching in_flight
        answered = CLIENT_GONE
        body = b""
        signature_ok: bool | None = None
        try:
            body = await request.read()
            signature_ok = self._signature_ok(request.headers, body)
            if signature_ok is False:
                answered = 401
                return web.Response(status=answered)
            status, retry_after, delay = self._plan(request.path)
            if delay > 0:
                await asyncio.sleep(delay)
            answered = status
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            return web.Response(status=status, headers=headers)
        finally:
            self.in_flight -= 1
            self._record(request, body, arrived, answered, signature_ok)

    def _signature_ok(self, headers: Mapping[str, str], body: bytes) -> bool | None:
        if self.secret is None:
            return None
        try:
            verify(self.secret, headers, body)
        except SignatureError:
            return False
        return True

    def _plan(self, path: str) -> tuple[int, str | None, float]:
        delay = self.delay + max((s for p, s in self._slow.items() if path.startswith(p)), default=0.0)
        for script in self._scripts:
            if script.remaining != 0 and path.startswith(script.prefix):
                if script.remaining > 0:
                    script.remaining -= 1
                return script.status, script.retry_after, delay + script.delay
        return 200, None, delay

    def _record(
        self, request: web.BaseRequest, body: bytes, at: float, status: int, signature_ok: bool | None
    ) -> None:
        headers = request.headers
        try:
            timestamp = int(headers.get("webhook-timestamp", "0"))
        except ValueError:
            timestamp = 0
        try:
            parsed: Any = jsonlib.loads(body) if body else None
        except ValueError:
            parsed = None
        self.received.append(
            Received(
                path=request.path,
                webhook_id=headers.get("webhook-id", ""),
                timestamp=timestamp,
                body=body,
                json=parsed,
                at=at,
                status=status,
                signature_ok=signature_ok,
                headers=headers,
            )
        )
        self._changed.set()


async def _serve(host: str, port: int, secret: str | None, delay: float) -> None:
    receiver = Receiver(secret, delay=delay)
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
        print("STATS " + jsonlib.dumps(receiver.stats()), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run the receiver as a process until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.receiver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on READY)")
    parser.add_argument("--secret", default=None, help="whsec_... secret; omit to skip verification")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.secret, args.delay))


if __name__ == "__main__":
    main()
