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
    def __init__(self, *, initial: float = 1.0, maximum: float = 300.0, jitter: float | None = None):
        # jitter scales with the first wait: a 0.2 s backoff must not get a whole second added
        self._wait = wait_exponential_jitter(multiplier=initial, max=maximum,
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
