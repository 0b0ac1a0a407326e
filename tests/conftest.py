"""Shared fixtures: a signed local webhook receiver and the real daemon as a process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from channels.signing import generate_secret
from tests.support.daemon import Daemon
from tests.support.receiver import Receiver

WEBHOOK_SECRET = generate_secret()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(WEBHOOK_SECRET)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


DaemonFactory = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def daemon_factory(tmp_path: Path) -> AsyncIterator[DaemonFactory]:
    started: list[Daemon] = []

    async def make(config: dict[str, Any], policy: dict[str, Any] | None = None, *, name: str = "gw",
                   env: dict[str, str] | None = None, start: bool = True, signoff: bool = False) -> Daemon:
        d = Daemon(tmp_path / name, config, policy, env={"GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET, **(env or {})},
                   signoff=signoff)
        started.append(d)
        if start:
            await d.start()
        return d

    try:
        yield make
    finally:
        for d in started:
            try:
                await d.stop()
            except Exception:
                if d.proc is not None:
                    d.proc.kill()
