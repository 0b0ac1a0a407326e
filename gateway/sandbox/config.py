"""What the sandbox does: credentials, latency, fault injection and scripted outcomes."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Final statuses a number can be scripted to end in, and the ErrorCode sent when none is given
# (https://www.twilio.com/docs/api/errors: 30003 unreachable handset, 30008 unknown error).
MESSAGE_FAILURES = {"undelivered": "30003", "failed": "30008"}
CALL_FAILURES = frozenset({"busy", "no-answer", "failed", "canceled"})

_FLOATS = ("latency", "callback_delay", "rate_429", "rate_500", "rate_timeout", "timeout_seconds")
_BOOLS = ("auto_press", "timeout_accepts")
_INTS = ("call_duration", "callback_retries")


@dataclass(frozen=True, slots=True)
class FailRule:
    """How a scripted number ends: a final status and, for SMS, an ErrorCode."""

    status: str
    error_code: str | None = None

    @classmethod
    def parse(cls, text: str) -> FailRule:
        """Parse 'status' or 'status:code', e.g. 'undelivered:30006' or 'busy'.

        Raises:
            ValueError: the status is not one the sandbox can script.
        """
        status, _, code = text.partition(":")
        status = status.strip()
        if status not in MESSAGE_FAILURES and status not in CALL_FAILURES:
            raise ValueError(f"unknown final status {status!r}")
        return cls(status, code.strip() or MESSAGE_FAILURES.get(status))


@dataclass
class SandboxConfig:
    """Sandbox behaviour; mutable at runtime through `update()` and POST /sandbox/config.

    Fault rates are probabilities per API request, drawn once from `rng` (seeded, so a run is
    reproducible): `rate_timeout` stalls the answer for `timeout_seconds` (then still accepts
    the request if `timeout_accepts`: the ambiguous case a retry duplicates), `rate_429` and
    `rate_500` answer with that error. `max_per_second` answers 429 when more requests of one
    kind arrived in the last second. `fail_numbers` maps a number to its scripted final status
    ('undelivered[:code]', 'failed[:code]', 'busy', 'no-answer', 'canceled'); `reject_numbers`
    maps a number to a Twilio error code the create call answers with (400). Calls to numbers
    in `auto_press_numbers`, or to all numbers with `auto_press`, press 1 once answered.

    Raises:
        ValueError: a rate, delay or script is out of range.
    """

    account_sid: str = "AC" + "0" * 32
    auth_token: str = field(default="sandbox-auth-token", repr=False)
    latency: float = 0.0
    callback_delay: float = 0.01
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    timeout_seconds: float = 30.0
    timeout_accepts: bool = True
    retry_after: str | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)
    fail_numbers: dict[str, str] = field(default_factory=dict)
    reject_numbers: dict[str, int] = field(default_factory=dict)
    auto_press: bool = False
    auto_press_numbers: frozenset[str] = frozenset()
    max_per_second: int | None = None
    call_duration: int = 12
    callback_retries: int = 2
    callback_timeout: float = 5.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check ranges and scripts.

        Raises:
            ValueError: something is out of range.
        """
        rates = (self.rate_429, self.rate_500, self.rate_timeout)
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0:
            raise ValueError("fault rates must be within 0..1 and sum to at most 1")
        delays = (self.latency, self.callback_delay, self.timeout_seconds, self.callback_timeout)
        if any(d < 0 for d in delays):
            raise ValueError("delays must be >= 0")
        if self.max_per_second is not None and self.max_per_second < 1:
            raise ValueError("max_per_second must be >= 1")
        if self.call_duration < 0 or self.callback_retries < 0:
            raise ValueError("call_duration and callback_retries must be >= 0")
        for rule in self.fail_numbers.values():
            FailRule.parse(rule)

    def fail_rule(self, number: str) -> FailRule | None:
        """The scripted outcome for `number`, if any."""
        text = self.fail_numbers.get(number)
        return FailRule.parse(text) if text else None

    def presses(self, number: str) -> bool:
        """True when a call to `number` presses 1 once answered."""
        return self.auto_press or number in self.auto_press_numbers

    def update(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """A copy with `changes` applied (JSON types); `seed` re-seeds the fault rng.

        Raises:
            ValueError: an unknown key, a wrong type or an out-of-range value.
        """
        values: dict[str, Any] = {}
        for key, value in changes.items():
            values.update(_convert(key, value))
        # replace() re-runs __post_init__, so a bad value leaves the running config untouched.
        return dataclasses.replace(self, **values)

    def public(self) -> dict[str, Any]:
        """The config as JSON, without the auth token."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}
        data["auto_press_numbers"] = sorted(self.auto_press_numbers)
        return data


def _convert(key: str, value: Any) -> dict[str, Any]:
    if key in _FLOATS and isinstance(value, int | float) and not isinstance(value, bool):
        return {key: float(value)}
    if key in _BOOLS and isinstance(value, bool):
        return {key: value}
    if key in _INTS and isinstance(value, int) and not isinstance(value, bool):
        return {key: value}
    if key == "seed" and isinstance(value, int):
        return {"rng": random.Random(value)}
    if key == "max_per_second" and (value is None or isinstance(value, int)):
        return {key: value}
    if key == "retry_after" and (value is None or isinstance(value, str | int | float)):
        return {key: None if value is None else str(value)}
    if key == "auth_token" and isinstance(value, str) and value:
        return {key: value}
    if key == "fail_numbers" and _str_map(value):
        return {key: dict(value)}
    if key == "reject_numbers" and isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
        return {key: {str(k): v for k, v in value.items()}}
    if key == "auto_press_numbers" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {key: frozenset(value)}
    raise ValueError(f"bad or unknown setting {key!r}")


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
