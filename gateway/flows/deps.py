"""The small dependencies every use case is built from, typed, instead of the whole daemon.

A flow names only what it uses: its store port(s), the current runtime, the dispatcher's
waker, the audit trail, metrics and a clock. The composition root (`gateway/app.py`) builds
each flow once from these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from gateway.runtime import Runtime

RuntimeRef = Callable[[], Runtime]
"""The runtime in force now: SIGHUP swaps it, so a flow asks at each use and never keeps one."""

Wake = Callable[[], None]
"""Tells the dispatcher that new work is due (cheap; coalesced by the dispatcher)."""

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch (`time.time`)."""


class AuditLog(Protocol):
    """Appends one record to the tamper-evident audit trail (`gateway.audit.AuditTrail`)."""

    async def __call__(self, principal: str, action: str, subject: str, detail: dict[str, Any]) -> None: ...
