"""Request counters and timestamps, so tests and benchmarks can check the gateway's send rate."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from gateway.sandbox.wire import Kind

KINDS: tuple[Kind, ...] = ("messages", "calls")


class Outcome(StrEnum):
    """How the sandbox answered one API request."""

    CREATED = "created"
    INVALID = "invalid"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    THROTTLED = "throttled"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"  # stalled past the client's patience (and maybe accepted after all)


class SandboxStats:
    """Counts by kind and outcome, arrival timestamps, callbacks sent and failed.

    Timestamps come from `clock` (wall-clock seconds by default); only differences matter.
    At most `keep` timestamps per kind are kept, which bounds memory in long benchmarks.
    """

    def __init__(self, clock: Callable[[], float] = time.time, keep: int = 200_000) -> None:
        """Start empty."""
        self._clock = clock
        self._keep = keep
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        self._arrivals: dict[str, deque[float]] = {k: deque(maxlen=self._keep) for k in KINDS}
        self._outcomes: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
        self.callbacks_sent = 0
        self.callbacks_failed = 0

    def arrived(self, kind: Kind) -> float:
        """Record one API request's arrival; returns its timestamp."""
        now = self._clock()
        self._arrivals[kind].append(now)
        return now

    def finished(self, kind: Kind, outcome: Outcome) -> None:
        """Record how a request was answered."""
        self._outcomes[kind][outcome] += 1

    def callback(self, ok: bool) -> None:
        """Record one callback delivery (after its retries)."""
        if ok:
            self.callbacks_sent += 1
        else:
            self.callbacks_failed += 1

    def count(self, kind: Kind, outcome: Outcome | None = None) -> int:
        """Requests of `kind`, all or with one outcome."""
        counts = self._outcomes[kind]
        return counts[outcome] if outcome is not None else sum(counts.values())

    def timestamps(self, kind: Kind) -> list[float]:
        """Arrival times of `kind` requests, oldest first."""
        return list(self._arrivals[kind])

    def recent(self, kind: Kind, now: float, window: float = 1.0) -> int:
        """Requests of `kind` that arrived within (now - window, now]."""
        total = 0
        for stamp in reversed(self._arrivals[kind]):
            if stamp <= now - window:
                break
            total += 1
        return total

    def max_in_window(self, kind: Kind, window: float = 1.0) -> int:
        """Most `kind` requests that arrived within any `window`-second span."""
        stamps = list(self._arrivals[kind])  # deque indexing is O(n) in the middle
        best = start = 0
        for end, stamp in enumerate(stamps):
            while stamps[start] <= stamp - window:
                start += 1
            best = max(best, end - start + 1)
        return best

    @property
    def served_429(self) -> int:
        """429 answers served, all kinds."""
        return sum(self._outcomes[k][Outcome.THROTTLED] for k in KINDS)

    def snapshot(self) -> dict[str, Any]:
        """Everything above as JSON for GET /sandbox/stats."""
        return {
            "requests": {k: dict(self._outcomes[k]) for k in KINDS},
            "totals": {k: self.count(k) for k in KINDS},
            "timestamps": {k: self.timestamps(k) for k in KINDS},
            "max_per_second": {k: self.max_in_window(k) for k in KINDS},
            "served_429": self.served_429,
            "callbacks": {"sent": self.callbacks_sent, "failed": self.callbacks_failed},
        }
