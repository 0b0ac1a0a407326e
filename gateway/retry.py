"""The outbox's retry decision: when to try again, or why to give up. Delays come from
tenacity's wait strategies; Retry-After raises them; attempts and the deadline bound them."""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import RetryCallState, wait_exponential_jitter


@dataclass(frozen=True, slots=True)
class RetryDecision:
    next_at: float | None
    give_up: str | None  # why not, when next_at is None


class Backoff:
    def __init__(self, *, initial: float = 0.2, base: float = 3.0, maximum: float = 300.0,
                 jitter: float | None = None):
        """Waits of `initial * base**(n-1)` plus up to `jitter` (default: `initial`) random.

        The defaults answer a blip fast and an outage patiently: 0.2, 0.6, 1.8 s, ... so a
        receiver that failed twice has its message within about a second, while eight attempts
        still span about 3.5 minutes.
        """
        # jitter scales with the first wait: a 0.2 s backoff must not get a whole second added
        self._wait = wait_exponential_jitter(multiplier=initial, exp_base=base, max=maximum,
                                             jitter=initial if jitter is None else jitter)

    def delay(self, attempt: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        return float(self._wait(state))

    def decide(self, *, attempts: int, max_attempts: int, now: float, deadline: float,
               retry_after: float | None) -> RetryDecision:
        if attempts >= max_attempts:
            return RetryDecision(None, f"gave up after {attempts} attempts")
        wait = self.delay(attempts)
        if retry_after is not None:
            wait = max(wait, retry_after)
        if now + wait > deadline:
            return RetryDecision(None, "deadline reached before the next attempt")
        return RetryDecision(now + wait, None)
