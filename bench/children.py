"""The helper processes the harness starts and stops by their own pid: the webhook receiver
(`bench.receiver`) and the bare loop (`bench.bare`, driven by JSON lines)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from bench.cases import CONCURRENCY, ROOT


class BenchError(RuntimeError):
    """A step of the harness failed; the case is reported as an error and the run goes on."""


class Child:
    """A helper process started by the harness, stopped by its own pid only."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def start_receiver(env: dict[str, str]) -> tuple[Child, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.receiver", "--port", "0",
        stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    if not line.startswith(b"READY "):
        raise BenchError(f"receiver did not start: {line!r}")
    return Child(proc, "receiver"), int(line.split()[1])


class Bare:
    """The bare-loop process, driven by JSON lines."""

    def __init__(self, child: Child) -> None:
        self.child = child

    @classmethod
    async def start(cls, env: dict[str, str]) -> Bare:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bare", "--concurrency", str(CONCURRENCY),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
            limit=64 * 1024 * 1024)
        return cls(Child(proc, "bare"))

    async def call(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        proc = self.child.proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            raise BenchError("bare loop process exited")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise BenchError(f"bare loop: {answer.get('error')}")
        return answer
