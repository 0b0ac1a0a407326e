"""A token bucket per provider sender, shared by every worker of the process.

`acquire()` reserves the next slot and sleeps until it: callers are served in order, the
rate is never exceeded, and a busy queue keeps the sender at the rate, not below it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._next = clock()  # when the next token is free (virtual scheduling)

    def reserve(self) -> float:
        """Take a slot; returns seconds to wait before using it."""
        now = self._clock()
        # 2% under the rate (issue 9 allows 2%): send-time jitter must not show above it at the provider
        interval = 1.0 / self.rate * 1.02
        earliest = now - (self.burst - 1) * interval
        slot = max(self._next, earliest)
        self._next = slot + interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
