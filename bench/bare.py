"""The baseline: a bare aiohttp client loop (no storage, no retries) as its own process.

    GATEWAY_WEBHOOK_SECRET=whsec_... python -m bench.bare --concurrency 50

Reads one JSON command per line on stdin and answers one JSON line on stdout:

- `{"op": "load", "name": N, "base": URL, "bodies": [...], "targets": [[path, body_index], ...]}`
- `{"op": "run", "name": N, "prefix": "bare-1-", "timeout": 60}` posts every target once,
  `concurrency` at a time over one warm keep-alive session, each request signed per Standard
  Webhooks exactly as the gateway signs it; answers `{"t0", "t_end", "statuses"}` where the
  times are `time.monotonic()` (one system-wide clock on Linux).
- `{"op": "quit"}`.

Keeping the loop in its own process gives it its own CPU accounting and its own interpreter,
as the gateway daemon has.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

from channels.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign


class BareLoop:
    def __init__(self, secret: str, concurrency: int) -> None:
        self.secret = secret
        self.concurrency = concurrency
        self.loads: dict[str, tuple[str, list[bytes], list[tuple[str, int]]]] = {}
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=10),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def load(self, cmd: dict[str, Any]) -> dict[str, Any]:
        bodies = [b.encode() for b in cmd["bodies"]]
        targets = [(str(p), int(i)) for p, i in cmd["targets"]]
        self.loads[cmd["name"]] = (cmd["base"], bodies, targets)
        return {"ok": True, "targets": len(targets)}

    async def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        base, bodies, targets = self.loads[cmd["name"]]
        prefix = str(cmd["prefix"])
        session = self.session()
        statuses: Counter[str] = Counter()
        work = iter(enumerate(targets))

        async def worker() -> None:
            for i, (path, body_index) in work:
                body = bodies[body_index]
                webhook_id = f"{prefix}{i}"
                stamp = int(time.time())
                headers = {
                    ID_HEADER: webhook_id,
                    TIMESTAMP_HEADER: str(stamp),
                    SIGNATURE_HEADER: sign(self.secret, webhook_id, stamp, body),
                    "content-type": "application/json",
                }
                try:
                    async with session.post(base + path, data=body, headers=headers) as resp:
                        await resp.read()
                        statuses[str(resp.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    statuses[type(exc).__name__] += 1

        t0 = time.monotonic()
        async with asyncio.timeout(float(cmd.get("timeout", 60))):
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        t_end = time.monotonic()
        return {"ok": True, "t0": t0, "t_end": t_end, "statuses": dict(statuses)}


async def _main(secret: str, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    bare = BareLoop(secret, concurrency)
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            op = cmd.get("op")
            try:
                if op == "load":
                    answer = bare.load(cmd)
                elif op == "run":
                    answer = await bare.run(cmd)
                elif op == "quit":
                    break
                else:
                    answer = {"ok": False, "error": f"unknown op {op}"}
            except Exception as exc:  # report, keep serving: the harness decides
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        await bare.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secret", default=os.environ.get("GATEWAY_WEBHOOK_SECRET"),
                        help="whsec_... secret (default: $GATEWAY_WEBHOOK_SECRET)")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("no secret: pass --secret or set GATEWAY_WEBHOOK_SECRET")
    asyncio.run(_main(args.secret, args.concurrency))


if __name__ == "__main__":
    main()
